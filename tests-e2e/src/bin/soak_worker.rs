//! One process of the soak test (`tests/redis_soak.rs`): paced idempotent
//! calls through its own `RedisBackend` while the test kills and restarts the
//! server underneath it.
//!
//! `soak-worker <redis-url> <worker-id> <calls> <keys> <concurrency> <pace-ms> <lease-ms> <seed>`
//!
//! Call `i` starts no earlier than `pace-ms * i / calls` after the start, so
//! the run lasts about `pace-ms` and the server's crashes land throughout it.
//! Every worker walks the keys in the same order at the same pace, so the
//! processes collide on each key; some calls run a little ahead of the walk,
//! so several keys are being claimed, run and completed at any moment, and
//! every fifth call repeats a key walked already, to replay results written
//! before a crash.
//!
//! It prints, one line each, flushed at once (so a worker killed by the
//! test still leaves what it did):
//! - `RUN <key> <execution-id> <epoch-ms>`: from inside the body, before its
//!   side effect (an async sleep) starts; the test counts body executions
//!   from these lines, not from the store, whose replies a crash can lose;
//! - `DONE <key> <execution-id> <epoch-ms>`: when the body's side effect ends
//!   (the test tells which crashes landed mid-body);
//! - `RESULT <key> <value> attempts=<n> ms=<elapsed> t=<epoch-ms>`: a call
//!   answered `Ok`; the value is `<key>:<execution-id>`;
//! - `ERROR <key> <error>`: a call answered with anything but `Backend` (of
//!   any kind but `Corrupt`) or `InProgress`, or still failing after its
//!   retry budget;
//! - `STATS name=value ...`: at the end, this worker's retries and the
//!   process-wide `idempotent_core::stats()`.
//!
//! `Error::Backend` (the server is down) and `Error::InProgress` are retried
//! with a backoff for up to `CALL_BUDGET`: the body did not run, so a retry is
//! always safe.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotent_core::{BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use tokio::time::Instant;

/// How long one call is retried while it gets `Backend` or `InProgress`. It
/// covers a claim whose reply a crash lost: the key stays blocked until that
/// claim's lease ends, then a retry takes it over.
const CALL_BUDGET: Duration = Duration::from_secs(60);
/// First and largest pause between two attempts of one call.
const FIRST_RETRY: Duration = Duration::from_millis(20);
const MAX_RETRY: Duration = Duration::from_millis(500);
/// How long the worker keeps trying to connect at start-up (a crash may be
/// under way).
const CONNECT_BUDGET: Duration = Duration::from_secs(20);
/// Bodies take 5 to 84 ms, except one in `LONG_BODY_ONE_IN`, which takes 3.5
/// to 8 s: long enough to renew its lease (every lease / 3) once or twice,
/// maybe while the server is down.
const LONG_BODY_ONE_IN: u64 = 25;
/// How far ahead of the walk some calls go (see `Config::key_of`).
const AHEAD: u64 = 12;

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);
static BACKEND_RETRIES: AtomicU64 = AtomicU64::new(0);
static BACKEND_OTHER_RETRIES: AtomicU64 = AtomicU64::new(0);
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

/// splitmix64: a well-mixed 64-bit value from any input, so every random
/// choice is a pure function of the seed, the worker and the call.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// One line on stdout, flushed at once.
fn emit(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").expect("write to stdout");
    stdout.flush().expect("flush stdout");
}

impl Config {
    /// The key of call `call`. Two calls in five follow the walk, so every
    /// key is called by every worker; two go up to `AHEAD` keys ahead of it,
    /// so several new keys are claimed and running at any moment; one repeats
    /// a key walked already, to replay a result written before a crash.
    fn key_of(&self, call: u64) -> u64 {
        let walked = call * self.keys / self.calls;
        let draw = mix(self.seed ^ (u64::from(self.worker) << 40) ^ call);
        match call % 5 {
            0 | 1 => walked,
            2 | 3 => (walked + draw % (AHEAD + 1)).min(self.keys - 1),
            _ => draw % (walked + 1),
        }
    }

    fn body_duration(&self, key: u64, execution: u64) -> Duration {
        let draw = mix(self.seed ^ mix(key) ^ (execution << 20) ^ u64::from(self.worker));
        if draw.is_multiple_of(LONG_BODY_ONE_IN) {
            Duration::from_millis(3_500 + (draw >> 8) % 4_500)
        } else {
            Duration::from_millis(5 + (draw >> 8) % 80)
        }
    }

    /// One call, retried while it fails closed.
    async fn call(&self, key: u64) {
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            let result = Idempotency::new(&self.store)
                .scope("soak")
                .lease(self.lease)
                .wait(self.lease + self.lease / 5)
                .run(&key, &key, || self.body(key))
                .await;
            let retry = match result {
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
                    if error.kind() != BackendErrorKind::Unavailable {
                        // Not an outage as such (e.g. `LOADING` right after a
                        // restart): counted apart, and shown.
                        BACKEND_OTHER_RETRIES.fetch_add(1, Ordering::Relaxed);
                        eprintln!("soak-worker: key {key}: retrying after {error}");
                    }
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
                emit(&format!(
                    "ERROR {key} still failing after {attempts} attempts in {:?}: {retry}",
                    started.elapsed()
                ));
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// The side effect: announced on stdout before it starts, then a sleep.
    async fn body(&self, key: u64) -> Result<String, Error> {
        let number = EXECUTIONS.fetch_add(1, Ordering::SeqCst);
        let execution = format!("w{}.p{}.e{number}", self.worker, std::process::id());
        emit(&format!("RUN {key} {execution} {}", epoch_ms()));
        tokio::time::sleep(self.body_duration(key, number)).await;
        emit(&format!("DONE {key} {execution} {}", epoch_ms()));
        Ok(format!("{key}:{execution}"))
    }
}

async fn connect(url: &str) -> RedisBackend {
    let started = Instant::now();
    loop {
        match RedisBackend::connect(url).await {
            Ok(store) => return store,
            Err(error) if started.elapsed() < CONNECT_BUDGET => {
                eprintln!("soak-worker: connecting to {url} failed, retrying: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("soak-worker: cannot connect to {url}: {error}"),
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], index: usize, name: &str) -> T {
    let usage = "usage: soak-worker <url> <worker> <calls> <keys> <concurrency> <pace-ms> \
                 <lease-ms> <seed>";
    args.get(index)
        .unwrap_or_else(|| panic!("{usage}; missing {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("{usage}; {name} is not a number"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, 1, "url");
    let concurrency: u64 = arg(&args, 5, "concurrency");
    let config = Arc::new(Config {
        store: connect(&url).await,
        worker: arg(&args, 2, "worker"),
        calls: arg(&args, 3, "calls"),
        keys: arg(&args, 4, "keys"),
        pace: Duration::from_millis(arg(&args, 6, "pace-ms")),
        lease: Duration::from_millis(arg(&args, 7, "lease-ms")),
        seed: arg(&args, 8, "seed"),
    });
    assert!(
        config.calls >= 5 * config.keys,
        "every key needs at least five calls per worker, so the walk covers every key"
    );

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
        "STATS backend_retries={} backend_other_retries={} in_progress_retries={} calls={} executions={} replays={} \
         takeovers={} waits={} in_progress={} store_errors={} renew_failures={} \
         leases_lost={} fenced={} complete_retries={} results_not_stored={} elapsed_ms={}",
        BACKEND_RETRIES.load(Ordering::Relaxed),
        BACKEND_OTHER_RETRIES.load(Ordering::Relaxed),
        IN_PROGRESS_RETRIES.load(Ordering::Relaxed),
        stats.calls,
        stats.executions,
        stats.replays,
        stats.takeovers,
        stats.waits,
        stats.in_progress,
        stats.store_errors,
        stats.renew_failures,
        stats.leases_lost,
        stats.fenced,
        stats.complete_retries,
        stats.results_not_stored,
        start.elapsed().as_millis(),
    ));
}
