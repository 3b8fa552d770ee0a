//! One process of the failover soak (`tests/redis_failover_soak.rs`): paced
//! idempotent calls through its own `RedisBackend`, connected through Redis
//! Sentinel with replica acks, while the test kills primaries and has the
//! sentinels promote replicas underneath it.
//!
//! `failover-worker <sentinel-urls> <master-name> <worker-id> <calls> <keys> <concurrency> <pace-ms> <lease-ms> <seed>`
//!
//! `sentinel-urls` is comma-separated. Call `i` starts no earlier than
//! `pace-ms * i / calls` after the start. Every worker walks the keys in the
//! same order at the same pace, so the processes collide on each key; some
//! calls run a few keys ahead, and every fifth repeats a key walked already.
//!
//! It prints, one line each, flushed at once:
//! - `RUN <key> <execution-id> <epoch-ms>`: from inside the body, before its side
//!   effect (an async sleep); the test counts body executions from these;
//! - `RESULT <key> <value> attempts=<n> ms=<elapsed> t=<epoch-ms>`: a call answered `Ok`;
//!   the value is `<key>:<execution-id>`;
//! - `CLOSED <key> attempts=<n> <error>`: a call that still failed closed
//!   (`Backend` or `InProgress`: its body did not run) after its budget;
//! - `ERROR <key> <error>`: any other answer;
//! - `STATS name=value ...`: at the end.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::{BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use tokio::time::Instant;

/// How long one call is retried while it fails closed: a failover and the
/// old primary's return as a replica take a few seconds, and a claim whose
/// fate a failover hid blocks its key until its lease ends.
const CALL_BUDGET: Duration = Duration::from_secs(40);
const FIRST_RETRY: Duration = Duration::from_millis(20);
const MAX_RETRY: Duration = Duration::from_millis(400);
const CONNECT_BUDGET: Duration = Duration::from_secs(30);
/// Replica acks: the one replica, within 200 ms.
const ACK_REPLICAS: usize = 1;
const ACK_TIMEOUT: Duration = Duration::from_millis(200);
const AHEAD: u64 = 8;

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static BACKEND_RETRIES: AtomicU64 = AtomicU64::new(0);
static IN_PROGRESS_RETRIES: AtomicU64 = AtomicU64::new(0);

struct Config {
    store: RedisBackend,
    worker: u32,
    calls: u64,
    keys: u64,
    pace: Duration,
    lease: Duration,
    seed: u64,
}

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").expect("write to stdout");
    stdout.flush().expect("flush stdout");
}

impl Config {
    fn key_of(&self, call: u64) -> u64 {
        let walked = call * self.keys / self.calls;
        let draw = mix(self.seed ^ (u64::from(self.worker) << 40) ^ call);
        match call % 5 {
            0 | 1 => walked,
            2 | 3 => (walked + draw % (AHEAD + 1)).min(self.keys - 1),
            _ => draw % (walked + 1),
        }
    }

    async fn call(&self, key: u64) {
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            let result = Idempotency::new(&self.store)
                .scope("failover-soak")
                .lease(self.lease)
                .wait(self.lease + self.lease / 5)
                .run(&key, &key, || self.body(key))
                .await;
            let failed_closed = match result {
                Ok(value) => {
                    emit(&format!(
                        "RESULT {key} {value} attempts={attempts} ms={} t={}",
                        started.elapsed().as_millis(),
                        epoch_ms()
                    ));
                    return;
                }
                Err(Error::Backend(error)) if error.kind() != BackendErrorKind::Corrupt => {
                    BACKEND_RETRIES.fetch_add(1, Ordering::Relaxed);
                    format!("Backend: {error}")
                }
                Err(Error::InProgress) => {
                    IN_PROGRESS_RETRIES.fetch_add(1, Ordering::Relaxed);
                    "InProgress".to_owned()
                }
                Err(other) => {
                    emit(&format!("ERROR {key} attempt {attempts}: {other:?}"));
                    return;
                }
            };
            if started.elapsed() + delay > CALL_BUDGET {
                emit(&format!("CLOSED {key} attempts={attempts} {failed_closed}"));
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    async fn body(&self, key: u64) -> Result<String, Error> {
        let number = EXECUTIONS.fetch_add(1, Ordering::SeqCst);
        let execution = format!("w{}.p{}.e{number}", self.worker, std::process::id());
        emit(&format!("RUN {key} {execution} {}", epoch_ms()));
        let draw = mix(self.seed ^ mix(key) ^ (number << 20));
        tokio::time::sleep(Duration::from_millis(5 + draw % 60)).await;
        Ok(format!("{key}:{execution}"))
    }
}

async fn connect(sentinels: &[String], master: &str) -> RedisBackend {
    let started = Instant::now();
    loop {
        match RedisBackend::connect_sentinel(sentinels, master).await {
            Ok(store) => {
                return store
                    .with_replica_acks(ACK_REPLICAS, ACK_TIMEOUT)
                    .expect("valid replica acks")
            }
            Err(error) if started.elapsed() < CONNECT_BUDGET => {
                eprintln!(
                    "failover-worker: connecting through {sentinels:?} failed, retrying: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("failover-worker: cannot connect through {sentinels:?}: {error}"),
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], index: usize, name: &str) -> T {
    let usage = "usage: failover-worker <sentinel-urls> <master-name> <worker> <calls> <keys> \
                 <concurrency> <pace-ms> <lease-ms> <seed>";
    args.get(index)
        .unwrap_or_else(|| panic!("{usage}; missing {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("{usage}; {name} is not valid"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sentinels: String = arg(&args, 1, "sentinel-urls");
    let sentinels: Vec<String> = sentinels.split(',').map(str::to_owned).collect();
    let master: String = arg(&args, 2, "master-name");
    let concurrency: u64 = arg(&args, 6, "concurrency");
    let config = Arc::new(Config {
        store: connect(&sentinels, &master).await,
        worker: arg(&args, 3, "worker"),
        calls: arg(&args, 4, "calls"),
        keys: arg(&args, 5, "keys"),
        pace: Duration::from_millis(arg(&args, 7, "pace-ms")),
        lease: Duration::from_millis(arg(&args, 8, "lease-ms")),
        seed: arg(&args, 9, "seed"),
    });
    assert!(config.keys > 0 && config.calls >= config.keys);

    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (config, next) = (Arc::clone(&config), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let call = next.fetch_add(1, Ordering::SeqCst);
                    if call >= config.calls {
                        return;
                    }
                    let due = config.pace.mul_f64(call as f64 / config.calls as f64);
                    tokio::time::sleep_until(start + due).await;
                    config.call(config.key_of(call)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a call task panicked");
    }

    let stats = idempotent_core::stats();
    emit(&format!(
        "STATS backend_retries={} in_progress_retries={} executions={} replays={} takeovers={} \
         store_errors={} renew_failures={} leases_lost={} fenced={} complete_retries={} \
         results_not_stored={} elapsed_ms={}",
        BACKEND_RETRIES.load(Ordering::Relaxed),
        IN_PROGRESS_RETRIES.load(Ordering::Relaxed),
        stats.executions,
        stats.replays,
        stats.takeovers,
        stats.store_errors,
        stats.renew_failures,
        stats.leases_lost,
        stats.fenced,
        stats.complete_retries,
        stats.results_not_stored,
        start.elapsed().as_millis(),
    ));
}
