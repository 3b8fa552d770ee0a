//! Soak: exactly once through real server crashes.
//!
//! Four worker processes (`src/bin/soak_worker.rs`), each with its own
//! `RedisBackend`, make 1500 paced calls each over the same 300 keys on one
//! private redis-server with `appendfsync always`, while this test kills it
//! (SIGKILL) and restarts it on the same port and data 5 to 8 times at random
//! moments. The workers retry calls that fail closed (`Backend` while the
//! server is down, `InProgress` while a claim whose reply was lost blocks its
//! key until its lease ends).
//!
//! At the end every key's body ran exactly once across all processes, every
//! caller got that execution's result for its own key, and the store holds it.
//! Body executions are counted from the workers' stdout (`RUN` lines printed
//! from inside the body), not in Redis, whose replies a crash can lose.
//!
//! The kill schedule and the workers' choices come from one seed, printed at
//! the start; rerun a failure with `SOAK_SEED=<seed>`. The server stays down
//! for well under a second each time, far shorter than the 10 s lease, which
//! is the condition for exactly once (a holder that cannot renew for a whole
//! lease may be taken over; that is documented).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use idempotent_core::{Idempotency, MemoryBackend};
use idempotent_test_support::{RedisOptions, RedisServer};

#[path = "support/workers.rs"]
mod workers;
use workers::Workers;

const WORKERS: u32 = 4;
const CALLS_PER_WORKER: u64 = 1500;
const KEYS: u64 = 300;
const CONCURRENCY_PER_WORKER: u64 = 32;
/// The workers spread their calls over this long, so the crashes land
/// throughout the run; a run takes about this plus a lease per lost claim.
const PACE: Duration = Duration::from_secs(24);
const LEASE: Duration = Duration::from_secs(10);
/// The record scope and key prefix the workers use.
const SCOPE: &str = "soak";
const KEY_PREFIX: &str = "idempotent:";

/// How many times the server is killed and restarted, and when: at random
/// moments between these bounds, at least `KILL_SPACING` after the previous
/// restart, down for a random time between the `DOWN_*` bounds each time.
const MIN_KILLS: u64 = 5;
const MAX_KILLS: u64 = 8;
const FIRST_KILL_AFTER: Duration = Duration::from_millis(1_000);
const LAST_KILL_BEFORE: Duration = Duration::from_millis(22_500);
const KILL_SPACING: Duration = Duration::from_millis(300);
const DOWN_MIN_MS: u64 = 50;
const DOWN_MAX_MS: u64 = 500;
/// The workers are killed and the test fails past this.
const DEADLINE: Duration = Duration::from_secs(100);
const POLL: Duration = Duration::from_millis(10);
const LOG_TAIL_LINES: usize = 40;

/// xorshift64: the kill schedule's randomness, reproducible from the seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Any seed, even 0, gives a nonzero state.
        Self((seed ^ 0x9e37_79b9_7f4a_7c15).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("SOAK_SEED={text:?} is not a u64"))
        }
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos());
            // Keep it short enough to type back in.
            (nanos as u64 ^ (u64::from(std::process::id()) << 32)) % 1_000_000_000_000
        }
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// One planned crash: when (after the start) and how long the server stays down.
#[derive(Debug)]
struct PlannedKill {
    at: Duration,
    down: Duration,
}

/// The kills spread over the run: one at a random moment in each of `n` equal
/// slots of the window, so they are random yet never all bunched together.
fn plan_kills(rng: &mut XorShift) -> Vec<PlannedKill> {
    let kills = rng.between(MIN_KILLS, MAX_KILLS);
    let first = FIRST_KILL_AFTER.as_millis() as u64;
    let slot = (LAST_KILL_BEFORE.as_millis() as u64 - first) / kills;
    (0..kills)
        .map(|index| PlannedKill {
            at: Duration::from_millis(first + index * slot + rng.between(0, slot - 1)),
            down: Duration::from_millis(rng.between(DOWN_MIN_MS, DOWN_MAX_MS)),
        })
        .collect()
}

/// A crash as it happened, in epoch milliseconds (the workers' clock too).
#[derive(Debug)]
struct Crash {
    killed_at: u128,
    restarted_at: u128,
}

/// The soak-worker processes, one per worker id, killed when dropped.
fn spawn_workers(url: &str, seed: u64) -> Workers {
    Workers::spawn(
        env!("CARGO_BIN_EXE_soak-worker"),
        (0..WORKERS).map(|worker| {
            vec![
                url.to_owned(),
                worker.to_string(),
                CALLS_PER_WORKER.to_string(),
                KEYS.to_string(),
                CONCURRENCY_PER_WORKER.to_string(),
                PACE.as_millis().to_string(),
                LEASE.as_millis().to_string(),
                seed.to_string(),
            ]
        }),
    )
}

/// One body execution, from a `RUN <key> <execution> <epoch-ms>` line.
#[derive(Debug)]
struct Run {
    worker: u32,
    execution: String,
    at: u128,
    /// When its side effect ended (`DONE` line).
    done: Option<u128>,
}

/// Everything the workers printed, sorted out.
#[derive(Default)]
struct Outcome {
    runs: BTreeMap<u64, Vec<Run>>,
    /// Per key: the values callers got, with how many callers got each.
    results: BTreeMap<u64, BTreeMap<String, u64>>,
    answered: u64,
    /// The workers' `STATS` figures, summed.
    stats: BTreeMap<String, u64>,
    stats_lines: u32,
    /// Answers that are not the result of one of their own key's executions.
    wrong_results: u64,
    problems: Vec<String>,
}

impl Outcome {
    fn read(&mut self, worker: u32, lines: &[String]) {
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["RUN", key, execution, at] => match (key.parse(), at.parse()) {
                    (Ok(key), Ok(at)) => self.runs.entry(key).or_default().push(Run {
                        worker,
                        execution: (*execution).to_owned(),
                        at,
                        done: None,
                    }),
                    _ => self
                        .problems
                        .push(format!("worker {worker}: bad line {line:?}")),
                },
                ["DONE", key, execution, at] => {
                    let run = key.parse().ok().and_then(|key: u64| {
                        self.runs
                            .get_mut(&key)?
                            .iter_mut()
                            .find(|run| run.execution == *execution)
                    });
                    match (run, at.parse()) {
                        (Some(run), Ok(at)) => run.done = Some(at),
                        _ => self
                            .problems
                            .push(format!("worker {worker}: bad line {line:?}")),
                    }
                }
                ["RESULT", key, value, ..] => match key.parse() {
                    Ok(key) => {
                        *self
                            .results
                            .entry(key)
                            .or_default()
                            .entry((*value).to_owned())
                            .or_default() += 1;
                        self.answered += 1;
                    }
                    Err(_) => self
                        .problems
                        .push(format!("worker {worker}: bad line {line:?}")),
                },
                ["STATS", figures @ ..] => {
                    self.stats_lines += 1;
                    for figure in figures {
                        let parsed = figure
                            .split_once('=')
                            .and_then(|(name, value)| Some((name, value.parse::<u64>().ok()?)));
                        match parsed {
                            Some((name, value)) => {
                                let total = self.stats.entry(name.to_owned()).or_default();
                                *total = if name == "elapsed_ms" {
                                    (*total).max(value)
                                } else {
                                    *total + value
                                };
                            }
                            None => self.problems.push(format!(
                                "worker {worker}: bad figure {figure:?} in {line:?}"
                            )),
                        }
                    }
                }
                _ => self.problems.push(format!(
                    "worker {worker}: a call failed or a line is unexpected: {line}"
                )),
            }
        }
    }

    fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }

    /// The checks: each key's body ran once, and everyone got its result.
    fn check(&mut self) -> BTreeSet<u64> {
        let mut suspects = BTreeSet::new();
        let mut executions = BTreeSet::new();
        for runs in self.runs.values() {
            for run in runs {
                if !executions.insert(run.execution.as_str()) {
                    self.problems
                        .push(format!("execution id {} printed twice", run.execution));
                }
            }
        }
        for key in 0..KEYS {
            let runs = self.runs.get(&key).map_or(&[][..], Vec::as_slice);
            if runs.len() != 1 {
                suspects.insert(key);
                self.problems.push(format!(
                    "key {key}: the body ran {} times across processes: {:?}",
                    runs.len(),
                    runs.iter().map(|run| &run.execution).collect::<Vec<_>>()
                ));
            }
            let Some(results) = self.results.get(&key) else {
                suspects.insert(key);
                self.problems
                    .push(format!("key {key}: no caller got a result"));
                continue;
            };
            if results.len() != 1 {
                suspects.insert(key);
                self.problems.push(format!(
                    "key {key}: callers got different results (value: callers) {results:?}"
                ));
            }
            for value in results.keys() {
                let belongs = value.split_once(':').is_some_and(|(owner, execution)| {
                    owner == key.to_string() && runs.iter().any(|run| run.execution == execution)
                });
                if !belongs {
                    self.wrong_results += results[value];
                    suspects.insert(key);
                    self.problems.push(format!(
                        "key {key}: a caller got {value:?}, which is not this key's execution"
                    ));
                }
            }
        }
        for key in self.runs.keys().chain(self.results.keys()) {
            if *key >= KEYS {
                self.problems
                    .push(format!("key {key} is outside 0..{KEYS}"));
            }
        }
        let expected = u64::from(WORKERS) * CALLS_PER_WORKER;
        if self.answered != expected {
            self.problems.push(format!(
                "{} of {expected} calls were answered",
                self.answered
            ));
        }
        if self.stats_lines != WORKERS {
            self.problems.push(format!(
                "{} of {WORKERS} workers printed their STATS",
                self.stats_lines
            ));
        }
        let runs: usize = self.runs.values().map(Vec::len).sum();
        if self.stats_lines == WORKERS && self.stat("executions") != runs as u64 {
            self.problems.push(format!(
                "the workers' stats count {} claims acquired but {runs} RUN lines were printed",
                self.stat("executions")
            ));
        }
        suspects
    }
}

/// The record key the workers' calls use for `key`.
fn record_key(key: u64) -> String {
    let call = Idempotency::new(MemoryBackend::new())
        .scope(SCOPE)
        .prepare(&key, &key);
    format!(
        "{KEY_PREFIX}{}",
        call.stored_key().expect("a u64 key serializes")
    )
}

/// After the run, the store holds each key's one execution's result.
fn check_store(server: &RedisServer, outcome: &mut Outcome) {
    let mut connection = server.connection();
    let records: u64 = redis::cmd("DBSIZE").query(&mut connection).expect("DBSIZE");
    if records != KEYS {
        outcome
            .problems
            .push(format!("the store holds {records} keys, expected {KEYS}"));
    }
    for key in 0..KEYS {
        // A record is `idem1`, its state, a 48-byte fingerprint and token,
        // then the output.
        let record: Option<Vec<u8>> = redis::cmd("GET")
            .arg(record_key(key))
            .query(&mut connection)
            .expect("GET a record");
        let state = record
            .as_deref()
            .and_then(|record| record.get(5..6))
            .map(|state| String::from_utf8_lossy(state).into_owned());
        let output = record.and_then(|record| record.get(54..).map(<[u8]>::to_vec));
        let Some([run]) = outcome.runs.get(&key).map(Vec::as_slice) else {
            continue; // already reported
        };
        let expected = format!("\"{key}:{}\"", run.execution);
        let holds = output.is_some_and(|output| {
            output
                .windows(expected.len())
                .any(|window| window == expected.as_bytes())
        });
        if state.as_deref() != Some("C") || !holds {
            outcome.problems.push(format!(
                "key {key}: the stored record is not the completed result {expected} \
                 (state {state:?})"
            ));
        }
    }
}

fn relative(at: u128, start: u128) -> String {
    format!("{:.3}s", (at as f64 - start as f64) / 1000.0)
}

/// Where `at` falls relative to the crashes.
fn relative_to_crashes(at: u128, crashes: &[Crash], start: u128) -> String {
    let mut place = format!("at {}", relative(at, start));
    for (index, crash) in crashes.iter().enumerate() {
        let number = index + 1;
        if at < crash.killed_at {
            let _ = write!(place, ", {} ms before kill #{number}", crash.killed_at - at);
            return place;
        }
        if at <= crash.restarted_at {
            let _ = write!(place, ", while the server was down (crash #{number})");
            return place;
        }
        if crashes
            .get(index + 1)
            .is_none_or(|next| at < next.killed_at)
        {
            let _ = write!(
                place,
                ", {} ms after restart #{number}",
                at - crash.restarted_at
            );
            return place;
        }
    }
    place
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn exactly_once_while_the_server_crashes_and_restarts() {
    let seed = seed();
    eprintln!("soak: seed {seed} (rerun with SOAK_SEED={seed})");
    let mut rng = XorShift::new(seed);
    let plan = plan_kills(&mut rng);

    let mut server = RedisServer::start_with(RedisOptions {
        appendonly_always: true,
        ..RedisOptions::default()
    });
    let started = Instant::now();
    let start_ms = epoch_ms();
    let mut workers = spawn_workers(&server.url(), seed);

    let mut crashes: Vec<Crash> = Vec::new();
    let mut last_restart = started;
    let mut timed_out = false;
    while !workers.all_exited() {
        if started.elapsed() > DEADLINE {
            timed_out = true;
            workers.kill_all();
            break;
        }
        if let Some(kill) = plan.get(crashes.len()) {
            if started.elapsed() >= kill.at && last_restart.elapsed() >= KILL_SPACING {
                let killed_at = epoch_ms();
                server.kill();
                thread::sleep(kill.down);
                server.restart();
                last_restart = Instant::now();
                crashes.push(Crash {
                    killed_at,
                    restarted_at: epoch_ms(),
                });
                continue;
            }
        }
        thread::sleep(POLL);
    }
    let elapsed = started.elapsed();

    let mut outcome = Outcome::default();
    let outputs = workers.outputs();
    for (worker, (lines, _)) in (0..WORKERS).zip(&outputs) {
        outcome.read(worker, lines);
    }
    if timed_out {
        outcome.problems.push(format!(
            "the workers did not finish within {} s and were killed",
            DEADLINE.as_secs()
        ));
    }
    for (worker, status) in workers.statuses().iter().enumerate() {
        if !status.is_some_and(|status| status.success()) {
            outcome
                .problems
                .push(format!("worker {worker} exited with {status:?}"));
        }
    }
    if crashes.len() != plan.len() {
        outcome.problems.push(format!(
            "only {} of the {} planned crashes happened before the workers finished",
            crashes.len(),
            plan.len()
        ));
    }
    let suspects = outcome.check();
    check_store(&server, &mut outcome);

    let runs: usize = outcome.runs.values().map(Vec::len).sum();
    let duplicates: usize = outcome
        .runs
        .values()
        .map(|runs| runs.len().saturating_sub(1))
        .sum();
    // Which crashes landed while bodies were running (between RUN and DONE).
    let in_flight: Vec<usize> = crashes
        .iter()
        .map(|crash| {
            outcome
                .runs
                .values()
                .flatten()
                .filter(|run| {
                    run.at <= crash.killed_at && run.done.is_none_or(|done| crash.killed_at < done)
                })
                .count()
        })
        .collect();
    let crash_list = crashes
        .iter()
        .enumerate()
        .map(|(index, crash)| {
            format!(
                "#{} killed at {} down {} ms mid-body of {}",
                index + 1,
                relative(crash.killed_at, start_ms),
                crash.restarted_at - crash.killed_at,
                in_flight[index]
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let summary = format!(
        "soak: seed {seed}; {WORKERS} processes x {CALLS_PER_WORKER} calls over {KEYS} keys \
         ({CONCURRENCY_PER_WORKER} concurrent per process, paced over {:?}, lease {:?}), one \
         redis-server with appendfsync always\n\
         soak: {} kills (SIGKILL) and {} restarts, {} of them while bodies ran ({} bodies in all): \
         {crash_list}\n\
         soak: {} calls answered in {:.1} s; {runs} body runs for {} keys; duplicates found: \
         {duplicates}; wrong results: {}\n\
         soak: Backend errors retried: {} ({} of them not `Unavailable`), InProgress retried: {}, takeovers of lost claims: {}, \
         waits: {}, renewal failures: {}, completions retried: {}, completions answered fenced: \
         {}, leases lost: {}, results not stored: {}",
        PACE,
        LEASE,
        crashes.len(),
        crashes.len(),
        in_flight.iter().filter(|&&bodies| bodies > 0).count(),
        in_flight.iter().sum::<usize>(),
        outcome.answered,
        elapsed.as_secs_f64(),
        outcome.runs.len(),
        outcome.wrong_results,
        outcome.stat("backend_retries"),
        outcome.stat("backend_other_retries"),
        outcome.stat("in_progress_retries"),
        outcome.stat("takeovers"),
        outcome.stat("waits"),
        outcome.stat("renew_failures"),
        outcome.stat("complete_retries"),
        outcome.stat("fenced"),
        outcome.stat("leases_lost"),
        outcome.stat("results_not_stored"),
    );

    if !outcome.problems.is_empty() {
        let mut report = format!("{summary}\n--- problems ---\n");
        for problem in outcome.problems.iter().take(50) {
            let _ = writeln!(report, "{problem}");
        }
        if outcome.problems.len() > 50 {
            let _ = writeln!(report, "... and {} more", outcome.problems.len() - 50);
        }
        for key in suspects.iter().take(10) {
            let _ = writeln!(report, "--- key {key} ---");
            for run in outcome.runs.get(key).map_or(&[][..], Vec::as_slice) {
                let _ = writeln!(
                    report,
                    "RUN {key} {} by worker {} {}; DONE {}",
                    run.execution,
                    run.worker,
                    relative_to_crashes(run.at, &crashes, start_ms),
                    run.done.map_or_else(
                        || "never".to_owned(),
                        |done| relative_to_crashes(done, &crashes, start_ms)
                    )
                );
            }
            let _ = writeln!(
                report,
                "results (value: callers): {:?}",
                outcome.results.get(key)
            );
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
            "--- redis-server log (tail) ---\n{}\n(rerun with SOAK_SEED={seed})",
            tail(&server.log(), LOG_TAIL_LINES)
        );
        panic!("{report}");
    }
    eprintln!("{summary}");
}
