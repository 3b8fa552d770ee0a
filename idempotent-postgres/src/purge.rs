//! Deleting expired rows: one bounded batch at a time, on demand or from a
//! background reaper.
//!
//! Expired rows are already treated as absent (a claim overwrites them), so
//! purging only gives the space back; it never changes an answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::BackendError;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::driver::{Driver, Param};

/// Deletes at most `batch` expired rows on `driver`: one statement (see
/// `sql.rs`), which locks only the rows it deletes.
pub(crate) async fn purge_expired(driver: &impl Driver, batch: u32) -> Result<u64, BackendError> {
    let sql = &driver.settings().statements.purge;
    driver
        .execute("purge", sql, &[Param::BigInt(i64::from(batch))])
        .await
}

/// Starts the reaper's task on `driver` (a clone of the store).
pub(crate) fn spawn_reaper<D>(driver: D, interval: Duration, batch: u32) -> Reaper
where
    D: Driver + 'static,
{
    let purged = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(reap(driver, interval, batch.max(1), Arc::clone(&purged)));
    Reaper { task, purged }
}

async fn reap<D: Driver>(driver: D, interval: Duration, batch: u32, purged: Arc<AtomicU64>) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    // After a slow pass, wait a whole interval again rather than catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let table = &driver.settings().table;
    loop {
        ticks.tick().await;
        loop {
            match purge_expired(&driver, batch).await {
                Ok(deleted) => {
                    purged.fetch_add(deleted, Ordering::Relaxed);
                    if deleted > 0 {
                        tracing::debug!(deleted, table = %table, "purged expired records");
                    }
                    if deleted < u64::from(batch) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %idempotent_core::backend::ErrorChain(&error), "could not purge expired records; trying again later");
                    break;
                }
            }
        }
    }
}

/// Documents and implements `purge_expired` and `spawn_reaper` on a store.
macro_rules! purge_methods {
    ($store:ident) => {
        impl $store {
            /// Deletes at most `batch` expired rows, oldest first, and returns how
            /// many it deleted: fewer than `batch` means none are left (for now).
            ///
            /// One statement that locks only the rows it deletes, skipping rows
            /// other statements hold, so it runs alongside live traffic and
            /// alongside other purges (see the crate's README for the SQL). Call it
            /// in a loop, or let [`spawn_reaper`](Self::spawn_reaper) do it.
            pub async fn purge_expired(
                &self,
                batch: u32,
            ) -> Result<u64, idempotent_core::BackendError> {
                $crate::purge::purge_expired(self, batch).await
            }

            /// Starts a task that purges expired rows now and then every `interval`,
            /// in batches of `batch` rows until a batch comes back short.
            ///
            /// The task runs until the returned [`Reaper`](crate::Reaper) is stopped or
            /// dropped. A failed purge is logged and tried again at the next interval.
            /// Several processes may each run one: their batches skip each other's rows.
            ///
            /// # Panics
            ///
            /// When called outside a Tokio runtime.
            pub fn spawn_reaper(
                &self,
                interval: std::time::Duration,
                batch: u32,
            ) -> $crate::Reaper {
                $crate::purge::spawn_reaper(self.clone(), interval, batch)
            }
        }
    };
}
pub(crate) use purge_methods;

/// A running background purge, from `spawn_reaper` on either store.
/// Dropping it stops the task.
#[derive(Debug)]
pub struct Reaper {
    task: JoinHandle<()>,
    purged: Arc<AtomicU64>,
}

impl Reaper {
    /// How many rows it has deleted so far.
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Stops the task (a statement in flight is abandoned; the database
    /// finishes or rolls it back on its own).
    pub fn stop(self) {
        // Dropping aborts.
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
