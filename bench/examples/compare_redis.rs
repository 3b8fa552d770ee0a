//! Side-by-side throughput and latency on one private redis-server, in one
//! run (these machines are noisy: compare the ratios, not the absolutes).
//!
//! `cargo run --release -p idempotent-bench --example compare_redis`
//!
//! For concurrency 1, 16 and 64 tasks sharing one connection, each scenario
//! runs for a fixed time and reports ops/s, p50 and p99:
//! - the ceiling: a raw `GET`, and a raw trivial `EVALSHA` (one round trip);
//! - the naive pattern written by hand: `GET`, then on a miss `SETEX` of a
//!   JSON `{status, body}` (two round trips, racy), measured on its miss path;
//! - `#[idempotent]` replay and first run on `RedisBackend`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotent_bench::{request, ChargeRequest, Receipt};
use idempotent_core::{idempotent, Error};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const RUN_FOR: Duration = Duration::from_secs(3);
const REPLAY_KEYS: u64 = 1_000;

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &RedisBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    })
}

/// One scenario's measurement, not started until awaited.
type Scenario<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Figures> + 'a>>;

/// One scenario's figures at one concurrency.
struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per operation: this process's (all threads), and the
    /// server's.
    client_cpu: Duration,
    server_cpu: Duration,
}

/// CPU time used by this process so far, all threads, user and system
/// (`/proc/self/stat`, in clock ticks of 10 ms).
fn client_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 =
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

/// Runs `op` from `tasks` tasks for `RUN_FOR`; `op` gets a unique sequence
/// number per call. `server` is a connection for reading the server's CPU
/// time.
async fn measure<F, Fut>(mut server: ConnectionManager, tasks: usize, op: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let sequence = Arc::new(AtomicU64::new(0));
    let (client_before, server_before) = (client_cpu(), server_cpu(&mut server).await);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, sequence) = (Arc::clone(&op), Arc::clone(&sequence));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(64 * 1024);
                while started.elapsed() < RUN_FOR {
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
    let (client_after, server_after) = (client_cpu(), server_cpu(&mut server).await);
    latencies.sort_unstable();
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile) as usize];
    let per_op = |cpu: Duration| cpu / u32::try_from(latencies.len()).expect("ops fit u32");
    Figures {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        client_cpu: per_op(client_after - client_before),
        server_cpu: per_op(server_after - server_before),
    }
}

// One client thread: the server is on the same 2-core machine and needs a
// core of its own, so a second client worker would only contend with it.
// Every scenario runs on the same runtime and connection kind.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Optional filters, for profiling one scenario:
    // `-- <scenario name part> [<tasks>]`.
    let mut args = std::env::args().skip(1);
    let only_scenario = args.next();
    let only_tasks: Option<usize> = args
        .next()
        .map(|tasks| tasks.parse().expect("tasks: a number"));
    let server = RedisServer::start();
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("url");
    let connection = ConnectionManager::new(client).await.expect("connect");
    let store = Arc::new(
        RedisBackend::connect(&url)
            .await
            .expect("connect the store"),
    );
    let trivial = Arc::new(redis::Script::new("return 1"));

    let mut setup = connection.clone();
    let _: () = setup.set("bench:get", "x".repeat(100)).await.expect("set");
    let _: i64 = trivial
        .invoke_async(&mut setup)
        .await
        .expect("load the script");
    for n in 0..REPLAY_KEYS {
        charge(&store, request(n))
            .await
            .expect("complete the replayed keys");
    }
    let requests: Arc<Vec<ChargeRequest>> = Arc::new((0..REPLAY_KEYS).map(request).collect());
    let first_runs = Arc::new(AtomicU64::new(10 * REPLAY_KEYS));
    let body = serde_json::json!({"status": 200, "body": {"charge_id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "amount": 1999}}).to_string();

    println!(
        "private redis-server {}, {} s per scenario, one shared connection\n",
        server.port(),
        RUN_FOR.as_secs()
    );
    println!(
        "{:<26} {:>5} {:>11} {:>9} {:>9} {:>12} {:>12}",
        "scenario", "tasks", "ops/s", "p50 µs", "p99 µs", "client µs/op", "server µs/op"
    );
    let mut table: Vec<(&str, usize, Figures)> = Vec::new();
    for tasks in CONCURRENCY {
        if only_tasks.is_some_and(|only| only != tasks) {
            continue;
        }
        let scenarios: Vec<(&str, Scenario<'_>)> = vec![
            (
                "raw GET",
                Box::pin(async {
                    let connection = connection.clone();
                    measure(connection.clone(), tasks, move |_| {
                        let mut connection = connection.clone();
                        async move {
                            let _: Option<String> = connection.get("bench:get").await.expect("get");
                        }
                    })
                    .await
                }) as Scenario<'_>,
            ),
            (
                "raw EVALSHA (return 1)",
                Box::pin(async {
                    let (connection, trivial) = (connection.clone(), Arc::clone(&trivial));
                    measure(connection.clone(), tasks, move |_| {
                        let (mut connection, trivial) = (connection.clone(), Arc::clone(&trivial));
                        async move {
                            let _: i64 = trivial
                                .invoke_async(&mut connection)
                                .await
                                .expect("evalsha");
                        }
                    })
                    .await
                }) as Scenario<'_>,
            ),
            (
                "naive GET+SETEX (miss)",
                Box::pin(async {
                    let (connection, body) = (connection.clone(), body.clone());
                    measure(connection.clone(), tasks, move |n| {
                        let (mut connection, body) = (connection.clone(), body.clone());
                        async move {
                            let key = format!("naive:{tasks}:{n}");
                            let found: Option<String> = connection.get(&key).await.expect("get");
                            if found.is_none() {
                                let _: () =
                                    connection.set_ex(&key, body, 86_400).await.expect("setex");
                            }
                        }
                    })
                    .await
                }) as Scenario<'_>,
            ),
            (
                "idempotent replay",
                Box::pin(async {
                    let (store, requests) = (Arc::clone(&store), Arc::clone(&requests));
                    measure(connection.clone(), tasks, move |n| {
                        let (store, requests) = (Arc::clone(&store), Arc::clone(&requests));
                        async move {
                            let req = requests[(n % REPLAY_KEYS) as usize].clone();
                            charge(&store, req).await.expect("replay");
                        }
                    })
                    .await
                }) as Scenario<'_>,
            ),
            (
                "idempotent first run",
                Box::pin(async {
                    let (store, first_runs) = (Arc::clone(&store), Arc::clone(&first_runs));
                    measure(connection.clone(), tasks, move |_| {
                        let (store, first_runs) = (Arc::clone(&store), Arc::clone(&first_runs));
                        async move {
                            let req = request(first_runs.fetch_add(1, Ordering::Relaxed));
                            charge(&store, req).await.expect("first run");
                        }
                    })
                    .await
                }) as Scenario<'_>,
            ),
        ];
        for (name, scenario) in scenarios {
            if only_scenario
                .as_deref()
                .is_some_and(|only| !name.contains(only))
            {
                continue;
            }
            let figures = scenario.await;
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

    println!("ratios of throughput (ours / reference):");
    let ops = |name: &str, tasks: usize| {
        table
            .iter()
            .find(|(n, t, _)| *n == name && *t == tasks)
            .map_or(f64::NAN, |(_, _, f)| f.ops_per_sec)
    };
    for tasks in CONCURRENCY {
        let replay = ops("idempotent replay", tasks);
        let first = ops("idempotent first run", tasks);
        println!(
            "  c={tasks:<3} replay/EVALSHA {:.2}  replay/GET {:.2}  first run/naive miss {:.2}  first run/EVALSHA {:.2}",
            replay / ops("raw EVALSHA (return 1)", tasks),
            replay / ops("raw GET", tasks),
            first / ops("naive GET+SETEX (miss)", tasks),
            first / ops("raw EVALSHA (return 1)", tasks),
        );
    }
}
