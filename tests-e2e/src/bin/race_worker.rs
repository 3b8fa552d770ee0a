//! One process of the cross-process exactly-once test: races other worker
//! processes on a shared set of keys through its own `RedisBackend`.
//!
//! `race-worker <redis-url> <worker-id> <calls> <keys> <concurrency>` prints one
//! `key<TAB>result` line per call. Each body execution increments
//! `race:runs:<key>` in Redis, so the test counts executions in the store
//! itself, across all processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::{idempotent, Error};
use idempotent_redis::RedisBackend;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

#[idempotent(key = key, skip(store, counter, worker), backend = store, scope = "race", wait = "60s", lease = "2s")]
async fn job(
    store: &RedisBackend,
    counter: &ConnectionManager,
    worker: u32,
    key: u32,
) -> Result<String, Error> {
    let mut counter = counter.clone();
    let _: u64 = counter
        .incr(format!("race:runs:{key}"), 1)
        .await
        .map_err(|error| {
            Error::Backend(idempotent_core::BackendError::new(
                idempotent_core::BackendErrorKind::Other,
                format!("counting the run failed: {error}"),
            ))
        })?;
    // Long enough that duplicates from other processes arrive meanwhile.
    tokio::time::sleep(Duration::from_millis(20 + u64::from(key % 7) * 5)).await;
    let execution = EXECUTIONS.fetch_add(1, Ordering::SeqCst);
    Ok(format!(
        "key {key} by worker {worker} pid {} execution {execution}",
        std::process::id()
    ))
}

fn arg(args: &[String], index: usize, name: &str) -> String {
    args.get(index).cloned().unwrap_or_else(|| {
        panic!("usage: race-worker <url> <worker> <calls> <keys> <concurrency>; missing {name}")
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, 1, "url");
    let worker: u32 = arg(&args, 2, "worker").parse().expect("worker id");
    let calls: u32 = arg(&args, 3, "calls").parse().expect("calls");
    let keys: u32 = arg(&args, 4, "keys").parse().expect("keys");
    let concurrency: u32 = arg(&args, 5, "concurrency").parse().expect("concurrency");

    let store = Arc::new(
        RedisBackend::connect(&url)
            .await
            .expect("connect the store"),
    );
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let counter = ConnectionManager::new(client)
        .await
        .expect("connect the counter");
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, counter, next) = (Arc::clone(&store), counter.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut lines = Vec::new();
                loop {
                    let call = next.fetch_add(1, Ordering::SeqCst);
                    if call >= u64::from(calls) {
                        return lines;
                    }
                    // Workers walk the keys from different offsets, so they
                    // collide on every key at different times.
                    let key = u32::try_from((call * 7 + u64::from(worker) * 13) % u64::from(keys))
                        .expect("key fits");
                    match job(&store, &counter, worker, key).await {
                        Ok(result) => lines.push(format!("{key}\t{result}")),
                        Err(error) => lines.push(format!("{key}\tERROR {error}")),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        for line in task.await.expect("worker task") {
            println!("{line}");
        }
    }
}
