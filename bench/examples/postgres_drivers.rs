//! The Postgres store on each driver, in one run on one private server:
//! `PostgresBackend` (tokio-postgres) against `SqlxBackend` (sqlx), ops/s of
//! a replay (one claim statement answering the stored result) and of a
//! first run (claim, then complete), from `TASKS` tasks at once; and
//! `SqlxBackend` without prepared statements (as behind PgBouncer).
//!
//! ```sh
//! cargo run --release -p idempotent-bench --example postgres_drivers [rounds] [seconds]
//! ```
//!
//! Rounds alternate the order of the stores (forwards, then backwards), so drift in the machine's load falls on both; the median
//! round of each is printed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotent_core::{Backend, Error, Idempotency};
use idempotent_postgres::sqlx::postgres::PgPoolOptions;
use idempotent_postgres::{PostgresBackend, SqlxBackend};
use idempotent_test_support::postgres::PostgresServer;

/// Concurrent callers, as many as the pool's connections at most.
const TASKS: usize = 8;

#[derive(Clone, Copy, Debug)]
enum Phase {
    Replay,
    FirstRun,
}

/// Calls per second of `phase` on `store` for `length`.
async fn measure<B>(store: Arc<B>, phase: Phase, length: Duration, tag: &str) -> f64
where
    B: Backend + Send + Sync + 'static,
{
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, done, tag) = (Arc::clone(&store), Arc::clone(&done), tag.to_owned());
            tokio::spawn(async move {
                let runtime = Idempotency::new(&*store).scope("bench::drivers");
                while started.elapsed() < length {
                    let key = match phase {
                        Phase::Replay => format!("replay-{tag}-{task}"),
                        Phase::FirstRun => {
                            format!("first-{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
                        }
                    };
                    let out: Result<u64, Error> = runtime
                        .clone()
                        .prepare(&key, &task)
                        .run(|| async { Ok(42) })
                        .await;
                    out.expect("a call");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);
    let seconds: f64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(2.0);
    let length = Duration::from_secs_f64(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = PostgresServer::start();
    runtime.block_on(async {
        let url = server.url();
        let tokio_store = Arc::new(PostgresBackend::connect(&url).await.expect("connect"));
        tokio_store.migrate().await.expect("migrate");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&url)
            .await
            .expect("connect");
        let sqlx_store = Arc::new(SqlxBackend::new(pool.clone()));
        // The PgBouncer setting: statements sent as text, planned each time.
        let unprepared = Arc::new(SqlxBackend::new(pool).with_prepared_statements(false));
        // Warm both: connections open, replay keys completed.
        measure(Arc::clone(&tokio_store), Phase::Replay, length / 4, "tokio").await;
        measure(Arc::clone(&sqlx_store), Phase::Replay, length / 4, "sqlx").await;
        measure(Arc::clone(&unprepared), Phase::Replay, length / 4, "text").await;
        let mut results: [[Vec<f64>; 2]; 3] = Default::default();
        for round in 0..rounds {
            for (p, phase) in [Phase::Replay, Phase::FirstRun].into_iter().enumerate() {
                let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
                for driver in order {
                    let rate = match driver {
                        0 => measure(Arc::clone(&tokio_store), phase, length, "tokio").await,
                        1 => measure(Arc::clone(&sqlx_store), phase, length, "sqlx").await,
                        _ => measure(Arc::clone(&unprepared), phase, length, "text").await,
                    };
                    results[driver][p].push(rate);
                }
            }
        }
        println!("{TASKS} tasks, {rounds} rounds of {seconds} s, median ops/s (all rounds)");
        for (driver, name) in [(0, "tokio-postgres"), (1, "sqlx"), (2, "sqlx unprepared")] {
            for (p, phase) in [(0, "replay"), (1, "first run")] {
                let rounds: Vec<String> = results[driver][p]
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect();
                println!(
                    "{name:>15} {phase:<9} {:>8.0}   ({})",
                    median(results[driver][p].clone()),
                    rounds.join(" ")
                );
            }
        }
        // Paired by round, so drift in the machine's speed cancels out.
        for (p, phase) in [(0, "replay"), (1, "first run")] {
            let ratios: Vec<f64> = results[0][p]
                .iter()
                .zip(&results[1][p])
                .map(|(tokio, sqlx)| tokio / sqlx)
                .collect();
            println!(
                "tokio-postgres / sqlx, {phase}: median ratio {:.2}",
                median(ratios)
            );
        }
    });
}
