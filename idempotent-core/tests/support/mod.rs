//! The model-based checker's machinery (see `tests/model_check.rs`).

pub mod exec;
pub mod faulty;
pub mod model;
pub mod schedule;
