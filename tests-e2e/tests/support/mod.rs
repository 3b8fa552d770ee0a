//! Shared helpers of the end-to-end tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts how many times a body ran.
#[derive(Clone, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    pub fn record(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// An error type as users write it: carries idempotency errors, plus its own.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize, PartialEq)]
pub enum AppError {
    #[error("idempotency: {0}")]
    Idempotency(String),
    #[error("declined: {0}")]
    Declined(String),
}

impl From<idempotent_core::Error> for AppError {
    fn from(error: idempotent_core::Error) -> Self {
        AppError::Idempotency(format!("{error:?}"))
    }
}
