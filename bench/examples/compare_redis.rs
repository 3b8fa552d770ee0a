//! Side-by-side throughput and latency on one private redis-server (or
//! valkey-server, with `--valkey`), in one run (these machines are noisy:
//! compare the ratios, not the absolutes).
//!
//! `cargo run --release -p idempotent-bench --example compare_redis [-- --valkey]`
//!
//! For two client setups, one after the other on the same server: a
//! single-threaded tokio runtime, and a multi-threaded one with 2 workers.
//! In both, all tasks of a scenario share one `ConnectionManager`. For 1, 4,
//! 16 and 64 tasks, each scenario reports ops/s, p50 and p99 latency, and CPU
//! time per operation of this process and of the server:
//! - the ceiling: a raw `GET`, and a raw trivial `EVALSHA` (one round trip);
//! - the naive pattern written by hand: `GET`, then on a miss `SETEX` of a
//!   JSON `{status, body}` (two round trips, racy), measured on its miss path
//!   and on its hit path (`GET` and decoding the JSON: what a replay does);
//! - `#[idempotent]` replay and first run on `RedisBackend`, and replay with
//!   the local cache of completed records (`with_local_cache`); the first
//!   run twice: with the plain completion (`SET .. IFEQ`) where the server
//!   has it (Valkey 9; Redis 7.0 has not, and runs the script there too),
//!   and with the Lua completion script whatever the server.
//!
//! The scenarios take turns, `ROUNDS` rounds of `ROUND` each, so a burst of
//! load from elsewhere on the machine hits them all alike; a scenario's ops/s
//! is the median of its rounds. The figures are also written as CSV to
//! `target/compare_redis.csv` for `bench/plot_throughput.py`.
//!
//! Optional filters, for profiling one scenario:
//! `-- <a scenario's name, or part of names> [<tasks> [current|multi]]`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotent_bench::{request, ChargeRequest, Receipt};
use idempotent_core::{idempotent, Error};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(600);
const REPLAY_KEYS: u64 = 1_000;

const GET: &str = "raw GET";
const EVALSHA: &str = "raw EVALSHA (return 1)";
const NAIVE: &str = "naive GET+SETEX (miss)";
const NAIVE_HIT: &str = "naive GET+JSON (hit)";
const REPLAY: &str = "idempotent replay";
const FIRST_RUN: &str = "idempotent first run";
const FIRST_RUN_SCRIPTS: &str = "idempotent first run, Lua";
const CACHED: &str = "idempotent replay, cached";
const SCENARIOS: [&str; 8] = [
    GET,
    EVALSHA,
    NAIVE,
    NAIVE_HIT,
    REPLAY,
    FIRST_RUN,
    FIRST_RUN_SCRIPTS,
    CACHED,
];

/// How the client runs its tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// One thread: the server gets the other core to itself.
    CurrentThread,
    /// Two workers, as an application server would run: they share the two
    /// cores with the server.
    MultiThread,
}

impl Setup {
    const ALL: [Setup; 2] = [Setup::CurrentThread, Setup::MultiThread];

    fn name(self) -> &'static str {
        match self {
            Setup::CurrentThread => "current",
            Setup::MultiThread => "multi",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Setup::CurrentThread => "single-threaded client runtime",
            Setup::MultiThread => "multi-threaded client runtime, 2 workers",
        }
    }

    fn runtime(self) -> tokio::runtime::Runtime {
        match self {
            Setup::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Setup::MultiThread => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            }
        }
        .enable_all()
        .build()
        .expect("runtime")
    }
}

/// What the naive pattern stores: the response, as JSON.
#[derive(serde::Deserialize)]
struct NaiveRecord {
    #[allow(dead_code)]
    status: u16,
    body: Receipt,
}

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &RedisBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    })
}

/// One round of one scenario at one concurrency.
struct Round {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    client_cpu: Duration,
    server_cpu: Duration,
}

/// A scenario's rounds at one concurrency, summarised.
struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per operation: this process's (all threads), and the
    /// server's.
    client_cpu: Duration,
    server_cpu: Duration,
}

impl Figures {
    fn of(rounds: &[Round]) -> Self {
        let mut rates: Vec<f64> = rounds
            .iter()
            .map(|round| round.ops as f64 / round.elapsed.as_secs_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        let mut latencies: Vec<Duration> = rounds
            .iter()
            .flat_map(|round| round.latencies.iter().copied())
            .collect();
        latencies.sort_unstable();
        let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile) as usize];
        let ops = u32::try_from(rounds.iter().map(|round| round.ops).sum::<usize>())
            .expect("ops fit u32");
        Figures {
            ops_per_sec: rates[rates.len() / 2],
            p50: at(0.50),
            p99: at(0.99),
            client_cpu: rounds
                .iter()
                .map(|round| round.client_cpu)
                .sum::<Duration>()
                / ops,
            server_cpu: rounds
                .iter()
                .map(|round| round.server_cpu)
                .sum::<Duration>()
                / ops,
        }
    }
}

/// CPU time used by this process so far, all threads, user and system
/// (`/proc/self/stat`, in clock ticks of 10 ms).
fn client_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
        .split(' ')
        .collect();
    let ticks =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// CPU time used by the server so far, from `INFO cpu`.
async fn server_cpu(connection: &mut ConnectionManager) -> Duration {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(connection)
        .await
        .expect("INFO cpu");
    let seconds: f64 = info
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            matches!(name, "used_cpu_sys" | "used_cpu_user")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum();
    Duration::from_secs_f64(seconds)
}

/// An operation to measure: called with a sequence number unique per call.
type Op = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn op<F, Fut>(op: F) -> Op
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |n| Box::pin(op(n)))
}

/// Runs `op` from `tasks` tasks for one round; `server` reads the server's
/// CPU time.
async fn round(
    server: &mut ConnectionManager,
    tasks: usize,
    op: &Op,
    sequence: &Arc<AtomicU64>,
) -> Round {
    let (client_before, server_before) = (client_cpu(), server_cpu(server).await);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, sequence) = (Arc::clone(op), Arc::clone(sequence));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                while started.elapsed() < ROUND {
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    let begun = Instant::now();
                    op(n).await;
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("task"));
    }
    let elapsed = started.elapsed();
    let (client_after, server_after) = (client_cpu(), server_cpu(server).await);
    Round {
        ops: latencies.len(),
        elapsed,
        latencies,
        client_cpu: client_after - client_before,
        server_cpu: server_after - server_before,
    }
}

fn main() {
    let valkey = std::env::args().any(|arg| arg == "--valkey");
    let mut args = std::env::args().skip(1).filter(|arg| arg != "--valkey");
    let only_scenario = args.next().filter(|only| !only.is_empty());
    let only_tasks: Option<usize> = args
        .next()
        .filter(|tasks| !tasks.is_empty())
        .map(|tasks| tasks.parse().expect("tasks: a number"));
    let only_setup = args.next();
    let filter = Filter {
        scenario: only_scenario,
        tasks: only_tasks,
    };

    let server = if valkey {
        RedisServer::start_valkey()
    } else {
        RedisServer::start()
    };
    // One sequence for both setups: first runs and naive misses never meet
    // a key of the setup before.
    let sequence = Arc::new(AtomicU64::new(0));
    let mut table: Vec<(Setup, &str, usize, Figures)> = Vec::new();
    for setup in Setup::ALL {
        if only_setup
            .as_deref()
            .is_some_and(|only| only != setup.name())
        {
            continue;
        }
        let figures = setup
            .runtime()
            .block_on(measure(setup, &server, &filter, &sequence));
        table.extend(
            figures
                .into_iter()
                .map(|(name, tasks, figures)| (setup, name, tasks, figures)),
        );
    }

    let ops_per_sec = |setup: Setup, name: &str, tasks: usize| {
        table
            .iter()
            .find(|(s, n, t, _)| *s == setup && *n == name && *t == tasks)
            .map_or(f64::NAN, |(_, _, _, f)| f.ops_per_sec)
    };
    for setup in Setup::ALL {
        println!(
            "ratios of throughput (ours / reference), {}:",
            setup.describe()
        );
        for tasks in CONCURRENCY {
            let at = |name| ops_per_sec(setup, name, tasks);
            let (replay, first) = (at(REPLAY), at(FIRST_RUN));
            println!(
                "  c={tasks:<3} replay/naive hit {:.2}  replay/GET {:.2}  replay/EVALSHA {:.2}  first run/naive miss {:.2}  Lua first run/naive miss {:.2}  first run/Lua first run {:.2}  first run/EVALSHA {:.2}  naive hit/GET {:.2}  cached replay/replay {:.1}",
                replay / at(NAIVE_HIT),
                replay / at(GET),
                replay / at(EVALSHA),
                first / at(NAIVE),
                at(FIRST_RUN_SCRIPTS) / at(NAIVE),
                first / at(FIRST_RUN_SCRIPTS),
                first / at(EVALSHA),
                at(NAIVE_HIT) / at(GET),
                at(CACHED) / replay,
            );
        }
    }

    let mut csv = String::from(
        "setup,scenario,tasks,ops_per_sec,p50_us,p99_us,client_cpu_us,server_cpu_us\n",
    );
    for (setup, name, tasks, figures) in &table {
        csv.push_str(&format!(
            "{},\"{name}\",{tasks},{:.0},{},{},{:.3},{:.3}\n",
            setup.name(),
            figures.ops_per_sec,
            figures.p50.as_micros(),
            figures.p99.as_micros(),
            figures.client_cpu.as_secs_f64() * 1e6,
            figures.server_cpu.as_secs_f64() * 1e6
        ));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare_redis.csv");
    std::fs::write(&path, csv).expect("write the CSV");
    println!("\nCSV: {}", path.display());
}

/// Which scenarios and concurrencies to run.
struct Filter {
    scenario: Option<String>,
    tasks: Option<usize>,
}

/// Every chosen scenario at every chosen concurrency, on the current
/// runtime, with connections of its own (a `ConnectionManager` belongs to
/// the runtime it was made on).
async fn measure(
    setup: Setup,
    server: &RedisServer,
    filter: &Filter,
    sequence: &Arc<AtomicU64>,
) -> Vec<(&'static str, usize, Figures)> {
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("url");
    // A generous response timeout: other work on this shared machine can
    // stall the server or the client for longer than a production bound.
    let config = ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let connection = ConnectionManager::new_with_config(client, config)
        .await
        .expect("connect");
    let store = Arc::new(
        RedisBackend::from_connection_manager(connection.clone())
            .detect_plain_commands()
            .await,
    );
    // Sends nothing at start, so it knows of no plain command: the scripts.
    let scripts_only = Arc::new(RedisBackend::from_connection_manager(connection.clone()));
    let cached = Arc::new(
        RedisBackend::from_connection_manager(connection.clone())
            .with_local_cache(2 * REPLAY_KEYS as usize, Duration::from_secs(60)),
    );
    let trivial = Arc::new(redis::Script::new("return 1"));

    let mut setup_connection = connection.clone();
    let _: () = setup_connection
        .set("bench:get", "x".repeat(100))
        .await
        .expect("set");
    let _: i64 = trivial
        .invoke_async(&mut setup_connection)
        .await
        .expect("load the script");
    for n in 0..REPLAY_KEYS {
        charge(&store, request(n))
            .await
            .expect("complete the replayed keys");
    }
    let requests: Arc<Vec<ChargeRequest>> = Arc::new((0..REPLAY_KEYS).map(request).collect());
    let body = serde_json::json!({"status": 200, "body": {"charge_id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "amount": 1999}}).to_string();
    // The naive pattern's hits: its records, keyed by the request's own key.
    let hit_keys: Arc<Vec<String>> = Arc::new(
        requests
            .iter()
            .map(|req| format!("naive:hit:{}", req.idempotency_key))
            .collect(),
    );
    for key in hit_keys.iter() {
        let _: () = setup_connection
            .set_ex(key, &body, 86_400)
            .await
            .expect("store a naive record");
    }

    let ops: BTreeMap<&str, Op> = BTreeMap::from([
        (GET, {
            let connection = connection.clone();
            op(move |_| {
                let mut connection = connection.clone();
                async move {
                    let _: Option<String> = connection.get("bench:get").await.expect("get");
                }
            })
        }),
        (EVALSHA, {
            let (connection, trivial) = (connection.clone(), Arc::clone(&trivial));
            op(move |_| {
                let (mut connection, trivial) = (connection.clone(), Arc::clone(&trivial));
                async move {
                    let _: i64 = trivial
                        .invoke_async(&mut connection)
                        .await
                        .expect("evalsha");
                }
            })
        }),
        (NAIVE, {
            let connection = connection.clone();
            op(move |n| {
                let (mut connection, body) = (connection.clone(), body.clone());
                async move {
                    let key = format!("naive:{n}");
                    let found: Option<String> = connection.get(&key).await.expect("get");
                    if found.is_none() {
                        let _: () = connection.set_ex(&key, body, 86_400).await.expect("setex");
                    }
                }
            })
        }),
        (NAIVE_HIT, {
            let (connection, hit_keys) = (connection.clone(), Arc::clone(&hit_keys));
            op(move |n| {
                let (mut connection, hit_keys) = (connection.clone(), Arc::clone(&hit_keys));
                async move {
                    let key = &hit_keys[(n % REPLAY_KEYS) as usize];
                    let found: Option<Vec<u8>> = connection.get(key).await.expect("get");
                    let record: NaiveRecord =
                        serde_json::from_slice(&found.expect("a naive hit")).expect("json");
                    std::hint::black_box(record.body);
                }
            })
        }),
        (REPLAY, replay(&store, &requests)),
        (FIRST_RUN, {
            let store = Arc::clone(&store);
            op(move |n| {
                let store = Arc::clone(&store);
                async move {
                    // Past the replayed keys: every call is a new key.
                    charge(&store, request(REPLAY_KEYS + n))
                        .await
                        .expect("first run");
                }
            })
        }),
        (FIRST_RUN_SCRIPTS, {
            let store = Arc::clone(&scripts_only);
            op(move |n| {
                let store = Arc::clone(&store);
                async move {
                    charge(&store, request(REPLAY_KEYS + n))
                        .await
                        .expect("first run");
                }
            })
        }),
        (CACHED, replay(&cached, &requests)),
    ]);

    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection.clone())
        .await
        .expect("INFO server");
    let version = version
        .lines()
        .find(|line| line.starts_with("valkey_version:"))
        .or_else(|| {
            version
                .lines()
                .find(|line| line.starts_with("redis_version:"))
        })
        .unwrap_or("version unknown")
        .to_owned();
    println!(
        "private server {} ({version}), {}, {ROUNDS} rounds of {} ms per scenario, one shared connection; {store:?}\n",
        server.port(),
        setup.describe(),
        ROUND.as_millis()
    );
    println!(
        "{:<26} {:>5} {:>11} {:>9} {:>9} {:>12} {:>12}",
        "scenario", "tasks", "ops/s", "p50 µs", "p99 µs", "client µs/op", "server µs/op"
    );
    let mut table: Vec<(&str, usize, Figures)> = Vec::new();
    for tasks in CONCURRENCY {
        if filter.tasks.is_some_and(|only| only != tasks) {
            continue;
        }
        let chosen: Vec<&str> = SCENARIOS
            .into_iter()
            .filter(|name| {
                // A whole name chooses that scenario alone.
                filter.scenario.as_deref().is_none_or(|only| {
                    *name == only || (!SCENARIOS.contains(&only) && name.contains(only))
                })
            })
            .collect();
        let mut rounds: BTreeMap<&str, Vec<Round>> = BTreeMap::new();
        for _ in 0..ROUNDS {
            for name in &chosen {
                let measured = round(&mut connection.clone(), tasks, &ops[name], sequence).await;
                rounds.entry(name).or_default().push(measured);
            }
        }
        for name in chosen {
            let figures = Figures::of(&rounds[name]);
            println!(
                "{:<26} {:>5} {:>11.0} {:>9} {:>9} {:>12.2} {:>12.2}",
                name,
                tasks,
                figures.ops_per_sec,
                figures.p50.as_micros(),
                figures.p99.as_micros(),
                figures.client_cpu.as_secs_f64() * 1e6,
                figures.server_cpu.as_secs_f64() * 1e6
            );
            table.push((name, tasks, figures));
        }
        println!();
    }
    table
}

/// Replays of the `REPLAY_KEYS` completed keys, round robin, through `store`.
fn replay(store: &Arc<RedisBackend>, requests: &Arc<Vec<ChargeRequest>>) -> Op {
    let (store, requests) = (Arc::clone(store), Arc::clone(requests));
    op(move |n| {
        let (store, requests) = (Arc::clone(&store), Arc::clone(&requests));
        async move {
            let req = requests[(n % REPLAY_KEYS) as usize].clone();
            charge(&store, req).await.expect("replay");
        }
    })
}
