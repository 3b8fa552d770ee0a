//! Soak: no body runs twice through real failovers of a replicated Redis.
//!
//! Worker processes (`src/bin/failover_worker.rs`), each with its own
//! `RedisBackend` connected through Redis Sentinel with
//! `with_replica_acks(1, 200 ms)`, make paced calls over shared keys on a
//! private primary with one replica, while this test fails the primary over
//! again and again: it kills the primary (SIGKILL) and waits for the
//! sentinels to promote the replica, then brings the dead node back as a
//! replica of the new primary; every other failover is a promotion on
//! request (`SENTINEL FAILOVER`) instead of a kill. Nothing persists to disk:
//! what survives a failover is what the replica had.
//!
//! The workers retry calls that fail closed (`Backend` while no primary with
//! a replica is reachable, `InProgress` while a claim whose fate a failover
//! hid blocks its key until its lease ends) for up to 40 s, then give up and
//! report the call as failed closed.
//!
//! At the end: no key's body ran twice across processes (counted from the
//! workers' stdout, `RUN` lines printed inside the body), every answer is the
//! result of its own key's one execution, every call was answered or failed
//! closed, and the primary holds every result that a caller got.
//!
//! The short version runs by default; `long_failover_soak` (`--ignored`)
//! runs more processes, calls and failovers. `SOAK_SEED=<seed>` replays the
//! workers' choices.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use idempotent_core::{Idempotency, MemoryBackend};
use idempotent_test_support::{RedisReplicaSet, RedisSentinel, MASTER_NAME};

#[path = "support/workers.rs"]
mod workers;
use workers::Workers;

const SCOPE: &str = "failover-soak";
const KEY_PREFIX: &str = "idempotent:";
const LEASE: Duration = Duration::from_secs(10);
/// Before the first failover, and between the end of one (the old primary
/// back as a replica, synced) and the start of the next.
const FIRST_FAILOVER_AFTER: Duration = Duration::from_secs(2);
const BETWEEN_FAILOVERS: Duration = Duration::from_millis(1_500);
const POLL: Duration = Duration::from_millis(10);
const LOG_TAIL_LINES: usize = 30;

/// One run's size.
struct Soak {
    workers: u32,
    calls_per_worker: u64,
    keys: u64,
    concurrency: u64,
    pace: Duration,
    failovers: usize,
    sentinels: usize,
    deadline: Duration,
}

fn seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SOAK_SEED={text:?} is not a u64")),
        Err(_) => {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64)
                % 1_000_000_000_000
        }
    }
}

/// The failover-worker processes, one per worker id, killed when dropped.
fn spawn_workers(soak: &Soak, sentinel_urls: &str, seed: u64) -> Workers {
    Workers::spawn(
        env!("CARGO_BIN_EXE_failover-worker"),
        (0..soak.workers).map(|worker| {
            vec![
                sentinel_urls.to_owned(),
                MASTER_NAME.to_owned(),
                worker.to_string(),
                soak.calls_per_worker.to_string(),
                soak.keys.to_string(),
                soak.concurrency.to_string(),
                soak.pace.as_millis().to_string(),
                LEASE.as_millis().to_string(),
                seed.to_string(),
            ]
        }),
    )
}

/// What the workers printed, sorted out.
#[derive(Default)]
struct Outcome {
    /// Per key, the executions of its body.
    runs: BTreeMap<u64, Vec<String>>,
    /// Per key, the values callers got and how many got each.
    results: BTreeMap<u64, BTreeMap<String, u64>>,
    answered: u64,
    failed_closed: u64,
    /// Per call latency of the answered calls, in ms.
    latencies_ms: Vec<u64>,
    stats: BTreeMap<String, u64>,
    stats_lines: u32,
    problems: Vec<String>,
}

impl Outcome {
    fn read(&mut self, worker: u32, lines: &[String]) {
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["RUN", key, execution, _at] => match key.parse() {
                    Ok(key) => self
                        .runs
                        .entry(key)
                        .or_default()
                        .push((*execution).to_owned()),
                    Err(_) => self.problems.push(format!("worker {worker}: {line:?}")),
                },
                ["RESULT", key, value, _attempts, ms, _at] => match key.parse() {
                    Ok(key) => {
                        *self
                            .results
                            .entry(key)
                            .or_default()
                            .entry((*value).to_owned())
                            .or_default() += 1;
                        self.answered += 1;
                        if let Some(ms) = ms.strip_prefix("ms=").and_then(|ms| ms.parse().ok()) {
                            self.latencies_ms.push(ms);
                        }
                    }
                    Err(_) => self.problems.push(format!("worker {worker}: {line:?}")),
                },
                ["CLOSED", ..] => self.failed_closed += 1,
                ["STATS", figures @ ..] => {
                    self.stats_lines += 1;
                    for figure in figures {
                        if let Some((name, value)) = figure
                            .split_once('=')
                            .and_then(|(name, value)| Some((name, value.parse::<u64>().ok()?)))
                        {
                            let total = self.stats.entry(name.to_owned()).or_default();
                            *total = if name == "elapsed_ms" {
                                (*total).max(value)
                            } else {
                                *total + value
                            };
                        }
                    }
                }
                _ => self
                    .problems
                    .push(format!("worker {worker}: unexpected line {line}")),
            }
        }
    }

    fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    fn duplicates(&self) -> usize {
        self.runs
            .values()
            .map(|runs| runs.len().saturating_sub(1))
            .sum()
    }

    /// Answers that are not the result of their key's one execution.
    fn wrong_results(&self) -> u64 {
        let mut wrong = 0;
        for (key, results) in &self.results {
            let runs = self.runs.get(key).map_or(&[][..], Vec::as_slice);
            for (value, callers) in results {
                let belongs = value.split_once(':').is_some_and(|(owner, execution)| {
                    owner == key.to_string() && runs.iter().any(|run| run == execution)
                });
                if !belongs || results.len() > 1 {
                    wrong += callers;
                }
            }
        }
        wrong
    }
}

fn record_key(key: u64) -> String {
    let call = Idempotency::new(MemoryBackend::new())
        .scope(SCOPE)
        .prepare(&key, &key);
    format!("{KEY_PREFIX}{}", call.stored_key().expect("a u64 key"))
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One failover: a kill of the primary (even `number`) or a promotion on
/// request (odd), then the old primary back as a synced replica.
fn fail_over(number: usize, set: &mut RedisReplicaSet, sentinel: &RedisSentinel) -> &'static str {
    let old = set.primary_index();
    let kind = if number.is_multiple_of(2) {
        set.kill_primary();
        sentinel.wait_for_failover(set);
        let port = set.primary().port();
        set.nodes_mut()[old].restart_as_replica_of(port);
        "kill"
    } else {
        sentinel.failover();
        sentinel.wait_for_failover(set);
        "promotion"
    };
    // A failover nobody asked for would make the replica set's idea of the primary wrong and
    // test the harness rather than the store: say so plainly.
    let made = sentinel.failovers();
    assert_eq!(
        made,
        number as u64 + 1,
        "after the {kind}, the sentinels made {made} failovers, not {}\n{}",
        number + 1,
        sentinel.logs()
    );
    let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        set.wait_for_replicas();
    }));
    if synced.is_err() {
        let mut nodes = String::new();
        for node in set.nodes() {
            let replication = node
                .try_query::<String>(redis::cmd("INFO").arg("replication"))
                .unwrap_or_else(|error| error.to_string());
            let _ = writeln!(
                nodes,
                "--- node on port {} ---\n{replication}\n--- its log ---\n{}",
                node.port(),
                node.log()
            );
        }
        panic!("after the {kind}:\n{nodes}\n{}", sentinel.logs());
    }
    sentinel.wait_for_replicas(1);
    kind
}

fn run(soak: &Soak) {
    let seed = seed();
    eprintln!("failover soak: seed {seed} (rerun with SOAK_SEED={seed})");
    let mut set = RedisReplicaSet::start(1);
    let sentinel = RedisSentinel::start(&set, soak.sentinels);
    let started = Instant::now();
    let mut workers = spawn_workers(soak, &sentinel.urls().join(","), seed);

    let mut failovers: Vec<(&str, Duration, Duration)> = Vec::new();
    let mut next_at = FIRST_FAILOVER_AFTER;
    let mut timed_out = false;
    while !workers.all_exited() {
        if started.elapsed() > soak.deadline {
            timed_out = true;
            workers.kill_all();
            break;
        }
        if failovers.len() < soak.failovers && started.elapsed() >= next_at {
            let at = started.elapsed();
            let kind = fail_over(failovers.len(), &mut set, &sentinel);
            failovers.push((kind, at, started.elapsed() - at));
            eprintln!(
                "failover soak: {kind} from {:?} ended at {} (epoch ms), primary now {}",
                at,
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis()),
                set.primary().port()
            );
            next_at = started.elapsed() + BETWEEN_FAILOVERS;
            continue;
        }
        thread::sleep(POLL);
    }
    let elapsed = started.elapsed();

    let mut outcome = Outcome::default();
    let outputs = workers.outputs();
    for (worker, (lines, _)) in (0..soak.workers).zip(&outputs) {
        outcome.read(worker, lines);
    }
    if timed_out {
        outcome.problems.push(format!(
            "the workers did not finish within {:?} and were killed",
            soak.deadline
        ));
    }
    for (worker, status) in workers.statuses().iter().enumerate() {
        if !status.is_some_and(|status| status.success()) {
            outcome
                .problems
                .push(format!("worker {worker} exited with {status:?}"));
        }
    }
    let calls = u64::from(soak.workers) * soak.calls_per_worker;
    if outcome.answered + outcome.failed_closed != calls {
        outcome.problems.push(format!(
            "{} answered and {} failed closed of {calls} calls",
            outcome.answered, outcome.failed_closed
        ));
    }
    if failovers.len() < soak.failovers {
        outcome.problems.push(format!(
            "only {} of {} failovers happened before the workers finished",
            failovers.len(),
            soak.failovers
        ));
    }
    let made = sentinel.failovers();
    if made != failovers.len() as u64 {
        outcome.problems.push(format!(
            "the sentinels made {made} failovers, the test asked for {}",
            failovers.len()
        ));
    }
    let duplicates = outcome.duplicates();
    if duplicates > 0 {
        for (key, runs) in outcome.runs.iter().filter(|(_, runs)| runs.len() > 1) {
            outcome.problems.push(format!(
                "key {key}: the body ran {} times: {runs:?}",
                runs.len()
            ));
        }
    }
    let wrong = outcome.wrong_results();
    if wrong > 0 {
        outcome.problems.push(format!(
            "{wrong} answers are not their key's one execution's result"
        ));
    }
    // Every result a caller got is in the store that survived.
    let primary = set.primary();
    let mut lost = 0;
    for (key, results) in &outcome.results {
        let record: Option<Vec<u8>> = primary.query(redis::cmd("GET").arg(record_key(*key)));
        let holds = record.as_deref().is_some_and(|record| {
            record.get(5) == Some(&b'C')
                && results.keys().all(|value| {
                    let expected = format!("\"{value}\"");
                    record
                        .windows(expected.len())
                        .any(|window| window == expected.as_bytes())
                })
        });
        if !holds {
            lost += 1;
            outcome.problems.push(format!(
                "key {key}: the primary does not hold the result callers got"
            ));
        }
    }

    let mut latencies = std::mem::take(&mut outcome.latencies_ms);
    latencies.sort_unstable();
    let runs: usize = outcome.runs.values().map(Vec::len).sum();
    let kills = failovers
        .iter()
        .filter(|(kind, ..)| *kind == "kill")
        .count();
    let failover_list = failovers
        .iter()
        .map(|(kind, at, took)| {
            format!(
                "{kind} at {:.1}s ({:.1}s)",
                at.as_secs_f64(),
                took.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let summary = format!(
        "failover soak: seed {seed}; {} processes x {} calls over {} keys ({} concurrent per \
         process, paced over {:?}, lease {LEASE:?}), a primary and a replica without \
         persistence, {} sentinel(s), replica acks (1 replica, 200 ms)\n\
         failover soak: {} failovers ({kills} primary kills, {} promotions on request): \
         {failover_list}\n\
         failover soak: {calls} calls in {:.1} s: {} answered, {} failed closed; {runs} body runs \
         for {} keys; duplicates: {duplicates}; wrong results: {wrong}; results lost: {lost}\n\
         failover soak: answered calls' latency p50 {} ms, p99 {} ms, max {} ms (retries \
         included); Backend errors retried: {}, InProgress retried: {}, takeovers: {}, \
         completions retried: {}, renewal failures: {}, results not stored: {}",
        soak.workers,
        soak.calls_per_worker,
        soak.keys,
        soak.concurrency,
        soak.pace,
        soak.sentinels,
        failovers.len(),
        failovers.len() - kills,
        elapsed.as_secs_f64(),
        outcome.answered,
        outcome.failed_closed,
        outcome.runs.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
        outcome.stat("backend_retries"),
        outcome.stat("in_progress_retries"),
        outcome.stat("takeovers"),
        outcome.stat("complete_retries"),
        outcome.stat("renew_failures"),
        outcome.stat("results_not_stored"),
    );
    if !outcome.problems.is_empty() {
        let mut report = format!("{summary}\n--- problems ---\n");
        for problem in outcome.problems.iter().take(40) {
            let _ = writeln!(report, "{problem}");
        }
        for (key, runs) in outcome
            .runs
            .iter()
            .filter(|(_, runs)| runs.len() > 1)
            .take(5)
        {
            let _ = writeln!(report, "--- key {key} ({} runs) ---", runs.len());
            for (worker, (lines, _)) in outputs.iter().enumerate() {
                for line in lines.iter().filter(|line| {
                    let mut fields = line.split_whitespace();
                    matches!(fields.next(), Some("RUN" | "RESULT" | "CLOSED"))
                        && fields.next() == Some(key.to_string().as_str())
                }) {
                    let _ = writeln!(report, "worker {worker}: {line}");
                }
            }
        }
        for (worker, (_, errors)) in outputs.iter().enumerate() {
            if !errors.trim().is_empty() {
                let _ = writeln!(
                    report,
                    "--- worker {worker} stderr (tail) ---\n{}",
                    tail(errors, LOG_TAIL_LINES)
                );
            }
        }
        let _ = writeln!(
            report,
            "--- sentinels (tail) ---\n{}\n(rerun with SOAK_SEED={seed})",
            tail(&sentinel.logs(), LOG_TAIL_LINES)
        );
        panic!("{report}");
    }
    eprintln!("{summary}");
}

/// The short version: a kill and a promotion, 3 processes x 600 calls.
#[test]
fn no_body_runs_twice_through_primary_failovers() {
    run(&Soak {
        workers: 3,
        calls_per_worker: 600,
        keys: 150,
        concurrency: 8,
        pace: Duration::from_secs(20),
        failovers: 2,
        sentinels: 1,
        deadline: Duration::from_secs(120),
    });
}

/// The long version: 4 processes x 5000 calls, 12 failovers, 3 sentinels.
#[test]
#[ignore = "long soak (a few minutes): cargo test -p idempotent-tests-e2e --test redis_failover_soak -- --ignored"]
fn long_failover_soak() {
    run(&Soak {
        workers: 4,
        calls_per_worker: 5_000,
        keys: 1_000,
        concurrency: 16,
        // A promotion on request takes about 20 s: Sentinel turns the old primary into a
        // replica 10 s after the switch and sees it synced at its next 10 s INFO. The calls
        // are paced over the 12 failovers' time, so that all happen while they run.
        pace: Duration::from_secs(260),
        failovers: 12,
        sentinels: 3,
        deadline: Duration::from_secs(600),
    });
}
