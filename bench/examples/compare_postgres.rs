//! `PostgresBackend` side by side with the SQL a hand-written idempotency
//! table uses, on one private Postgres server, in one run (these machines are
//! noisy: compare the ratios, not the absolutes).
//!
//! `cargo run --release -p idempotent-bench --example compare_postgres`
//!
//! The hand-written pattern (as the seed of this project wrote it): `INSERT ..
//! ON CONFLICT DO NOTHING RETURNING` to claim, and when that returned no row a
//! `SELECT` of the stored response (a replay: two statements); after the body
//! an `UPDATE` that stores the response (a first run: two statements, and no
//! fencing: a stale holder may overwrite a newer result). Ours is
//! `#[idempotent]` on `PostgresBackend`: one statement for a replay, two
//! (claim, completion) for a first run.
//!
//! For 1, 16 and 64 tasks, each with a pool of as many connections, every
//! scenario reports ops/s, the WAL it wrote per operation (the
//! `pg_current_wal_lsn()` difference over its rounds), and the CPU time per
//! operation of the server (its processes' `utime + stime` in
//! `/proc/<pid>/stat`) and of the client (this process): unlike ops/s,
//! those hardly depend on what else the machine runs. The scenarios take
//! turns, `ROUNDS` rounds of `ROUND` each; ops/s is the median round. The
//! figures are also written as CSV to `target/compare_postgres.csv` for
//! `bench/plot_postgres.py`.
//!
//! Optional filter: `-- <part of a scenario name> [<tasks>]`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idempotent_bench::{request, serialize_and_hash, ChargeRequest, Receipt};
use idempotent_core::{idempotent, Error};
use idempotent_postgres::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use idempotent_postgres::tokio_postgres::NoTls;
use idempotent_postgres::PostgresBackend;
use idempotent_test_support::postgres::PostgresServer;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_millis(800);
const REPLAY_KEYS: u64 = 1_000;

const SEED_REPLAY: &str = "seed replay (INSERT, SELECT)";
const OURS_REPLAY: &str = "idempotent replay";
const SEED_FIRST: &str = "seed first run (INSERT, UPDATE)";
const OURS_FIRST: &str = "idempotent first run";
const SCENARIOS: [&str; 4] = [SEED_REPLAY, OURS_REPLAY, SEED_FIRST, OURS_FIRST];

/// The seed's table, as its migration made it.
const SEED_TABLE: &str = "CREATE TABLE IF NOT EXISTS seed_idempotency (
    key text PRIMARY KEY,
    fingerprint bytea NOT NULL,
    status text NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now()
)";
const SEED_CLAIM: &str = "INSERT INTO seed_idempotency (key, fingerprint, status)
    VALUES ($1, $2, 'running') ON CONFLICT DO NOTHING RETURNING key";
const SEED_READ: &str = "SELECT fingerprint, status, response FROM seed_idempotency WHERE key = $1";
const SEED_COMPLETE: &str =
    "UPDATE seed_idempotency SET status = 'completed', response = $2 WHERE key = $1";

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &PostgresBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(body(&req))
}

fn body(req: &ChargeRequest) -> Receipt {
    Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    }
}

/// The seed's call: claim, then replay or run the body and store its result.
async fn seed_charge(pool: &Pool, req: &ChargeRequest) -> Receipt {
    let fingerprint = serialize_and_hash(req);
    let client = pool.get().await.expect("a connection");
    let claim = client.prepare_cached(SEED_CLAIM).await.expect("prepare");
    let claimed = client
        .query_opt(&claim, &[&req.idempotency_key, &&fingerprint[..]])
        .await
        .expect("claim");
    if claimed.is_none() {
        let read = client.prepare_cached(SEED_READ).await.expect("prepare");
        let row = client
            .query_one(&read, &[&req.idempotency_key])
            .await
            .expect("read");
        let stored: &[u8] = row.get(0);
        assert_eq!(stored, fingerprint, "the seed checks the fingerprint");
        let status: &str = row.get(1);
        assert_eq!(status, "completed", "replays only completed keys");
        let response: &[u8] = row.get(2);
        return serde_json::from_slice(response).expect("a stored receipt");
    }
    let receipt = body(req);
    let response = serde_json::to_vec(&receipt).expect("encode");
    let complete = client.prepare_cached(SEED_COMPLETE).await.expect("prepare");
    client
        .execute(&complete, &[&req.idempotency_key, &response])
        .await
        .expect("complete");
    receipt
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

/// One round: how many calls finished, in how long, writing how much WAL.
struct Round {
    ops: u64,
    elapsed: Duration,
    wal_bytes: i64,
    /// CPU time the server's processes used, in clock ticks.
    server_ticks: u64,
    /// CPU time this process (the client) used, in clock ticks.
    client_ticks: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`, 100 on
/// Linux whatever the kernel's own tick rate).
const TICKS_PER_SEC: f64 = 100.0;

/// `utime + stime` of a process, from `/proc/<pid>/stat`; `None` once it
/// has exited.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The CPU ticks of the server: its postmaster and every process it forked
/// (a backend per connection, and the background processes), by pid.
fn server_ticks(postmaster: u32) -> BTreeMap<String, u64> {
    let mut ticks = BTreeMap::new();
    let postmaster = postmaster.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if pid == postmaster || parent == Some(postmaster.as_str()) {
            if let Some(used) = cpu_ticks(&pid) {
                ticks.insert(pid, used);
            }
        }
    }
    ticks
}

/// The server's CPU ticks from `before` to `after`: processes alive at the
/// end (a round's pools keep their connections throughout).
fn ticks_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, used)| used - before.get(pid).copied().unwrap_or(0).min(*used))
        .sum()
}

async fn wal_position(pool: &Pool) -> String {
    let client = pool.get().await.expect("a connection");
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal position");
    row.get(0)
}

async fn wal_between(pool: &Pool, from: &str, to: &str) -> i64 {
    let client = pool.get().await.expect("a connection");
    let row = client
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
            &[&to, &from],
        )
        .await
        .expect("wal difference");
    row.get(0)
}

async fn round(
    probe: &Pool,
    postmaster: u32,
    tasks: usize,
    op: &Op,
    sequence: &Arc<AtomicU64>,
) -> Round {
    let wal_before = wal_position(probe).await;
    let server_before = server_ticks(postmaster);
    let client_before = cpu_ticks("self").unwrap_or(0);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (op, sequence, done) = (Arc::clone(op), Arc::clone(sequence), Arc::clone(&done));
            tokio::spawn(async move {
                while started.elapsed() < ROUND {
                    op(sequence.fetch_add(1, Ordering::Relaxed)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    let elapsed = started.elapsed();
    let client_ticks = cpu_ticks("self").unwrap_or(0) - client_before;
    let server_ticks = ticks_between(&server_before, &server_ticks(postmaster));
    let wal_after = wal_position(probe).await;
    Round {
        ops: done.load(Ordering::Relaxed),
        elapsed,
        // The two probes' own reads write nothing.
        wal_bytes: wal_between(probe, &wal_before, &wal_after).await,
        server_ticks,
        client_ticks,
    }
}

/// One scenario's figures at one concurrency.
struct Row {
    name: &'static str,
    tasks: usize,
    ops_per_sec: f64,
    wal_per_op: f64,
    server_us: f64,
    client_us: f64,
}

fn pool(url: &str, size: usize) -> Pool {
    let config = url.parse().expect("url");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size).build().expect("pool")
}

// Two workers: an application server's runtime on this 2-core machine,
// which it shares with the database.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let only_scenario = args.next().filter(|only| !only.is_empty());
    let only_tasks: Option<usize> = args
        .next()
        .map(|tasks| tasks.parse().expect("tasks: a number"));

    let server = PostgresServer::start();
    let url = server.url();
    let probe = pool(&url, 1);
    let setup = PostgresBackend::from_pool(pool(&url, 1));
    setup.migrate().await.expect("migrate");
    probe
        .get()
        .await
        .expect("a connection")
        .batch_execute(SEED_TABLE)
        .await
        .expect("the seed's table");
    let requests: Arc<Vec<ChargeRequest>> = Arc::new((0..REPLAY_KEYS).map(request).collect());
    for req in requests.iter() {
        charge(&setup, req.clone()).await.expect("complete");
        seed_charge(setup.pool(), req).await;
    }

    println!(
        "private Postgres on port {}, {ROUNDS} rounds of {} ms per scenario, a pool of one connection per task, 2 client workers\n",
        server.port(),
        ROUND.as_millis()
    );
    println!(
        "{:<32} {:>5} {:>9} {:>12} {:>14} {:>14}",
        "scenario", "tasks", "ops/s", "WAL B/op", "server µs/op", "client µs/op"
    );
    let sequence = Arc::new(AtomicU64::new(0));
    let mut table: Vec<Row> = Vec::new();
    for tasks in CONCURRENCY {
        if only_tasks.is_some_and(|only| only != tasks) {
            continue;
        }
        let ours = Arc::new(PostgresBackend::from_pool(pool(&url, tasks)));
        let seed = pool(&url, tasks);
        let ops: BTreeMap<&str, Op> = BTreeMap::from([
            (SEED_REPLAY, {
                let (seed, requests) = (seed.clone(), Arc::clone(&requests));
                op(move |n| {
                    let (seed, requests) = (seed.clone(), Arc::clone(&requests));
                    async move {
                        seed_charge(&seed, &requests[(n % REPLAY_KEYS) as usize]).await;
                    }
                })
            }),
            (OURS_REPLAY, {
                let (ours, requests) = (Arc::clone(&ours), Arc::clone(&requests));
                op(move |n| {
                    let (ours, requests) = (Arc::clone(&ours), Arc::clone(&requests));
                    async move {
                        let req = requests[(n % REPLAY_KEYS) as usize].clone();
                        charge(&ours, req).await.expect("replay");
                    }
                })
            }),
            (SEED_FIRST, {
                let seed = seed.clone();
                op(move |n| {
                    let seed = seed.clone();
                    // Past the replayed keys: every call is a new key.
                    async move {
                        seed_charge(&seed, &request(REPLAY_KEYS + n)).await;
                    }
                })
            }),
            (OURS_FIRST, {
                let ours = Arc::clone(&ours);
                op(move |n| {
                    let ours = Arc::clone(&ours);
                    async move {
                        charge(&ours, request(REPLAY_KEYS + n))
                            .await
                            .expect("first run");
                    }
                })
            }),
        ]);
        let chosen: Vec<&str> = SCENARIOS
            .into_iter()
            .filter(|name| {
                only_scenario
                    .as_deref()
                    .is_none_or(|only| name.contains(only))
            })
            .collect();
        let mut rounds: BTreeMap<&str, Vec<Round>> = BTreeMap::new();
        for _ in 0..ROUNDS {
            for name in &chosen {
                let measured = round(&probe, server.pid(), tasks, &ops[name], &sequence).await;
                rounds.entry(name).or_default().push(measured);
            }
        }
        for name in chosen {
            let rounds = &rounds[name];
            let mut rates: Vec<f64> = rounds
                .iter()
                .map(|round| round.ops as f64 / round.elapsed.as_secs_f64())
                .collect();
            rates.sort_by(f64::total_cmp);
            let ops_per_sec = rates[rates.len() / 2];
            let ops: u64 = rounds.iter().map(|round| round.ops).sum();
            let wal: i64 = rounds.iter().map(|round| round.wal_bytes).sum();
            let wal_per_op = wal as f64 / ops.max(1) as f64;
            let micros_per_op = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e6 / ops.max(1) as f64;
            let server_us = micros_per_op(rounds.iter().map(|round| round.server_ticks).sum());
            let client_us = micros_per_op(rounds.iter().map(|round| round.client_ticks).sum());
            println!(
                "{name:<32} {tasks:>5} {ops_per_sec:>9.0} {wal_per_op:>12.1} {server_us:>14.1} {client_us:>14.1}"
            );
            table.push(Row {
                name,
                tasks,
                ops_per_sec,
                wal_per_op,
                server_us,
                client_us,
            });
        }
        println!();
    }

    let at = |name: &str, tasks: usize| {
        table
            .iter()
            .find(|row| row.name == name && row.tasks == tasks)
            .map_or(f64::NAN, |row| row.ops_per_sec)
    };
    println!("ratios of throughput (ours / the seed's):");
    for tasks in CONCURRENCY {
        println!(
            "  c={tasks:<3} replay {:.2}  first run {:.2}",
            at(OURS_REPLAY, tasks) / at(SEED_REPLAY, tasks),
            at(OURS_FIRST, tasks) / at(SEED_FIRST, tasks),
        );
    }

    let mut csv = String::from(
        "scenario,tasks,ops_per_sec,wal_bytes_per_op,server_us_per_op,client_us_per_op\n",
    );
    for row in &table {
        csv.push_str(&format!(
            "\"{}\",{},{:.0},{:.1},{:.1},{:.1}\n",
            row.name, row.tasks, row.ops_per_sec, row.wal_per_op, row.server_us, row.client_us
        ));
    }
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare_postgres.csv");
    std::fs::write(&path, csv).expect("write the CSV");
    println!("\nCSV: {}", path.display());
}
