//! What `RedisBackend::with_replica_acks` costs per call: the same calls with
//! and without acks, in one run, on a private primary with one replica
//! (loopback, no persistence).
//!
//! ```sh
//! cargo run --release -p idempotent-bench --example replica_acks
//! ```
//!
//! One caller at a time, so each figure is one call's latency: a first run
//! (claim, body, completion: two round trips, each followed by `WAIT` with
//! acks) and a replay (one round trip). The two stores take turns in rounds,
//! so load from elsewhere on the machine hits both alike; the figures are
//! the percentiles over all rounds.

use std::time::{Duration, Instant};

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisReplicaSet;

const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 500;
const ACK_TIMEOUT: Duration = Duration::from_millis(100);

async fn call(store: &RedisBackend, key: &str) -> Duration {
    let started = Instant::now();
    let result: Result<u64, Error> = Idempotency::new(store)
        .scope("bench::replica_acks")
        .run(&key, &1, || async { Ok(7) })
        .await;
    let took = started.elapsed();
    assert_eq!(result.expect("the call answers"), 7);
    took
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

struct Samples {
    first_runs: Vec<Duration>,
    replays: Vec<Duration>,
}

impl Samples {
    fn line(&mut self, name: &str) -> String {
        self.first_runs.sort_unstable();
        self.replays.sort_unstable();
        format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            percentile(&self.first_runs, 0.5),
            percentile(&self.first_runs, 0.99),
            percentile(&self.replays, 0.5),
            percentile(&self.replays, 0.99),
        )
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let set = RedisReplicaSet::start(1);
    let plain = RedisBackend::connect(&set.primary().url())
        .await
        .expect("connect");
    let acked = RedisBackend::connect(&set.primary().url())
        .await
        .expect("connect")
        .with_replica_acks(1, ACK_TIMEOUT)
        .expect("valid acks");
    let mut samples = [
        Samples {
            first_runs: Vec::new(),
            replays: Vec::new(),
        },
        Samples {
            first_runs: Vec::new(),
            replays: Vec::new(),
        },
    ];
    // Warm up both connections and the scripts.
    for (index, store) in [&plain, &acked].into_iter().enumerate() {
        for call_number in 0..100 {
            call(store, &format!("warm-{index}-{call_number}")).await;
        }
    }
    for round in 0..ROUNDS {
        for (index, store) in [&plain, &acked].into_iter().enumerate() {
            for call_number in 0..CALLS_PER_ROUND {
                let key = format!("{index}-{round}-{call_number}");
                samples[index].first_runs.push(call(store, &key).await);
                samples[index].replays.push(call(store, &key).await);
            }
        }
    }
    println!(
        "{} rounds x {} first runs and {} replays per store, one caller, a primary and one \
         replica on loopback (redis-server, no persistence); latency in µs",
        ROUNDS, CALLS_PER_ROUND, CALLS_PER_ROUND
    );
    println!("| store | first run p50 | first run p99 | replay p50 | replay p99 |");
    println!("| --- | --- | --- | --- | --- |");
    println!("{}", samples[0].line("without acks"));
    println!(
        "{}",
        samples[1].line(&format!("with_replica_acks(1, {ACK_TIMEOUT:?})"))
    );
}
