//! The HTTP layer's cost under load, against the plain handler and a raw
//! Redis round trip, driven by `wrk` from its own process.
//!
//! `cargo run --release -p idempotent-bench --example http_load`
//!
//! The runner installs `wrk` when it is missing (apt-get), starts a private
//! redis-server, and starts this same binary as the server (`serve` mode):
//! one axum app whose routes are the setups measured, with one handler
//! (parse a ~200-byte JSON charge, answer a small JSON receipt):
//! - `/plain`: the handler alone;
//! - `/memory`: behind `IdempotencyLayer` on `MemoryBackend`;
//! - `/redis`: behind the layer on `RedisBackend`;
//! - `/redis-get`: the handler plus one raw `GET` whose value is the answer,
//!   the reference for the layer on Redis;
//! - `/peer`: behind the peer crate `axum-idempotent` on its in-memory
//!   session store (moka), keyed by the same header.
//!
//! Replays send one key (completed before measuring) on every request; first
//! runs a new key per request. The layer shares one key space
//! (`shared_key_space()`): the load has a single client.
//!
//! The machine has two cores for the server, Redis and `wrk`, so the server
//! runs one thread and `wrk` one thread. The scenarios take turns, `ROUNDS`
//! rounds of `SECONDS` each, at 1, 16 and 64 connections, so a burst of load
//! from elsewhere hits them all alike; req/s is the median round. Each run is
//! checked: no status of 400 or more, no socket error, and the handler ran
//! once per request for first runs and never for replays (the server counts
//! its runs). The figures go to `target/http_load.csv`.
//!
//! `HTTP_LOAD_ROUNDS` and `HTTP_LOAD_SECONDS` change the rounds (default 5)
//! and their length (default 2 s). Optional filters, for profiling:
//! `-- <part of a scenario name> [<connections>]`.

mod cpu;
mod http;
mod server;
mod wrk;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use idempotent_bench::request;
use idempotent_test_support::RedisServer;

const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// Sessions the peer's first runs spread their keys over: its store prunes a
/// session's fields on every write, so one session holding every key of a
/// run would measure that scan rather than a client's usual few keys.
const PEER_SESSIONS: usize = 64;
/// The key every replay sends, completed before the runs.
const REPLAY_KEY: &str = "replay";

const PLAIN: &str = "plain handler";
const MEMORY_REPLAY: &str = "layer, memory: replay";
const MEMORY_FIRST: &str = "layer, memory: first run";
const REDIS_GET: &str = "raw Redis GET handler";
const REDIS_REPLAY: &str = "layer, Redis: replay";
const REDIS_FIRST: &str = "layer, Redis: first run";
const PEER_REPLAY: &str = "axum-idempotent: replay";
const PEER_FIRST: &str = "axum-idempotent: first run";

/// One setup and one kind of load.
struct Scenario {
    name: &'static str,
    route: &'static str,
    /// A new key per request (first runs), or the replay key.
    fresh: bool,
    /// Whether the handler runs for each request (else: never, a replay).
    runs_handler: bool,
    peer: bool,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario::new(PLAIN, "/plain", false, true, false),
    Scenario::new(MEMORY_REPLAY, "/memory", false, false, false),
    Scenario::new(MEMORY_FIRST, "/memory", true, true, false),
    Scenario::new(REDIS_GET, "/redis-get", false, true, false),
    Scenario::new(REDIS_REPLAY, "/redis", false, false, false),
    Scenario::new(REDIS_FIRST, "/redis", true, true, false),
    Scenario::new(PEER_REPLAY, "/peer", false, false, true),
    Scenario::new(PEER_FIRST, "/peer", true, true, true),
];

impl Scenario {
    const fn new(
        name: &'static str,
        route: &'static str,
        fresh: bool,
        runs_handler: bool,
        peer: bool,
    ) -> Self {
        Scenario {
            name,
            route,
            fresh,
            runs_handler,
            peer,
        }
    }
}

/// One `wrk` run, with the CPU the server and Redis used during it.
struct Measured {
    report: wrk::Report,
    server_cpu: Duration,
    redis_cpu: Duration,
}

/// A scenario's rounds at one connection count, summarised.
struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// CPU per request of the server, Redis and `wrk`.
    server_cpu: Duration,
    redis_cpu: Duration,
    wrk_cpu: Duration,
}

impl Figures {
    fn of(rounds: &[Measured]) -> Self {
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let requests: u64 = rounds.iter().map(|m| m.report.requests).sum();
        let per_request =
            |cpu: Duration| Duration::from_secs_f64(cpu.as_secs_f64() / requests.max(1) as f64);
        Figures {
            per_sec: median(rounds.iter().map(|m| m.report.per_sec()).collect()),
            p50: Duration::from_secs_f64(median(
                rounds.iter().map(|m| m.report.p50.as_secs_f64()).collect(),
            )),
            p99: Duration::from_secs_f64(median(
                rounds.iter().map(|m| m.report.p99.as_secs_f64()).collect(),
            )),
            server_cpu: per_request(rounds.iter().map(|m| m.server_cpu).sum()),
            redis_cpu: per_request(rounds.iter().map(|m| m.redis_cpu).sum()),
            wrk_cpu: per_request(rounds.iter().map(|m| m.report.cpu).sum()),
        }
    }
}

/// The server process, killed when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(redis_url: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .args(["serve", redis_url])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the server's address");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the server did not start: {line:?}"));
        ServerProcess { child, addr }
    }

    fn cpu(&self) -> Duration {
        cpu::of(self.child.id())
    }

    /// How often each route's handler has run.
    fn runs(&self) -> BTreeMap<String, u64> {
        let reply = http::send(self.addr, "GET", "/runs", &[], "").expect("read the run counts");
        reply
            .body
            .lines()
            .filter_map(|line| {
                let (route, count) = line.split_once(' ')?;
                Some((route.to_owned(), count.parse().ok()?))
            })
            .collect()
    }

    /// A new session of the peer's session layer, as a `Cookie` value.
    fn peer_session(&self) -> String {
        let reply =
            http::send(self.addr, "POST", "/peer/login", &[], "").expect("open a peer session");
        let cookie = reply
            .header("set-cookie")
            .and_then(|cookie| cookie.split(';').next())
            .filter(|cookie| cookie.starts_with(server::PEER_COOKIE))
            .unwrap_or_else(|| panic!("no session cookie from /peer/login ({})", reply.status));
        cookie.to_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time Redis has used so far, from `INFO cpu`.
fn redis_cpu(redis: &RedisServer) -> Duration {
    let info: String = redis.query(redis::cmd("INFO").arg("cpu"));
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

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            eprintln!("{name}={value:?} is not a number");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

/// Completes the replay key of `scenario`'s route and checks that a second
/// request is answered as a replay.
fn prime(server: &ServerProcess, scenario: &Scenario, body: &str, cookie: Option<&str>) {
    let key = format!("\"{REPLAY_KEY}\"");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Idempotency-Key", key.as_str()),
    ];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    for attempt in ["first run", "replay"] {
        let reply = http::send(server.addr, "POST", scenario.route, &headers, body)
            .expect("prime the replay key");
        assert_eq!(
            reply.status, 200,
            "{}: the {attempt} of the replay key got {}: {}",
            scenario.name, reply.status, reply.body
        );
        if attempt == "replay" {
            let replayed = ["idempotent-replayed", "idempotency-replayed"]
                .iter()
                .any(|name| reply.header(name) == Some("true"));
            assert!(
                replayed,
                "{}: the second request was not a replay",
                scenario.name
            );
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("serve") {
        server::serve(&args.next().expect("serve <redis url>"));
        return ExitCode::SUCCESS;
    }
    let only_scenario = first.filter(|only| !only.is_empty());
    let only_connections: Option<usize> = args.next().map(|connections| {
        connections.parse().unwrap_or_else(|_| {
            eprintln!("connections: a number, not {connections:?}");
            std::process::exit(2)
        })
    });
    let rounds = env_number("HTTP_LOAD_ROUNDS", 5).max(1);
    let seconds = env_number("HTTP_LOAD_SECONDS", 2).max(1);

    if let Err(why) = wrk::ensure_installed() {
        eprintln!("{why}");
        std::process::exit(2);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let script = wrk::write_script(&target);

    let redis = RedisServer::start();
    let receipt = serde_json::json!({"charge_id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "amount": 1999});
    let _: () = redis.query(
        redis::cmd("SET")
            .arg(server::GET_KEY)
            .arg(receipt.to_string()),
    );
    let server = ServerProcess::start(&redis.url());
    let body = serde_json::to_string(&request(0)).expect("a JSON body");

    let replay_session = server.peer_session();
    for scenario in SCENARIOS.iter().filter(|s| !s.fresh && !s.runs_handler) {
        prime(
            &server,
            scenario,
            &body,
            scenario.peer.then_some(&*replay_session),
        );
    }

    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            only_scenario
                .as_deref()
                .is_none_or(|only| s.name.contains(only))
        })
        .collect();
    println!(
        "server {} (1 thread), private redis-server {}, wrk 4 (1 thread); \
         {rounds} rounds of {seconds} s per scenario; load average {}\n",
        server.addr,
        redis.port(),
        load_average()
    );
    println!(
        "{:<28} {:>5} {:>9} {:>8} {:>8} {:>11} {:>11} {:>11}",
        "scenario", "conns", "req/s", "p50 µs", "p99 µs", "server µs", "redis µs", "wrk µs"
    );

    let mut invalid: Vec<String> = Vec::new();
    let mut table: Vec<(&str, usize, Figures)> = Vec::new();
    let mut all_rounds: BTreeMap<(usize, &str), Vec<Measured>> = BTreeMap::new();
    for connections in CONNECTIONS {
        if only_connections.is_some_and(|only| only != connections) {
            continue;
        }
        let mut measured: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
        for round in 0..rounds {
            for scenario in &chosen {
                let cookies = match (scenario.peer, scenario.fresh) {
                    (false, _) => Vec::new(),
                    (true, false) => vec![replay_session.clone()],
                    (true, true) => (0..PEER_SESSIONS).map(|_| server.peer_session()).collect(),
                };
                let key = if scenario.fresh {
                    format!("first-c{connections}-r{round}")
                } else {
                    REPLAY_KEY.to_owned()
                };
                let mode = if scenario.fresh { "fresh" } else { "same" };
                let mut script_args = vec![mode.to_owned(), key, body.clone()];
                script_args.extend(cookies);

                let runs_before = server.runs();
                let (server_before, redis_before) = (server.cpu(), redis_cpu(&redis));
                let report = wrk::Run {
                    script: &script,
                    server: server.addr,
                    path: scenario.route,
                    connections,
                    seconds,
                    args: script_args,
                }
                .run()
                .unwrap_or_else(|why| panic!("{}: {why}", scenario.name));
                let (server_after, redis_after) = (server.cpu(), redis_cpu(&redis));
                let runs_after = server.runs();

                let ran = runs_after[scenario.route] - runs_before[scenario.route];
                let label = format!(
                    "{} at {connections} connections, round {round}",
                    scenario.name
                );
                if let Some(why) = check(scenario, connections, &report, ran) {
                    eprintln!("INVALID {label}: {why}");
                    invalid.push(format!("{label}: {why}"));
                }
                measured.entry(scenario.name).or_default().push(Measured {
                    report,
                    server_cpu: server_after.saturating_sub(server_before),
                    redis_cpu: redis_after.saturating_sub(redis_before),
                });
            }
        }
        for scenario in &chosen {
            let figures = Figures::of(&measured[scenario.name]);
            println!(
                "{:<28} {:>5} {:>9.0} {:>8} {:>8} {:>11.1} {:>11.1} {:>11.1}",
                scenario.name,
                connections,
                figures.per_sec,
                figures.p50.as_micros(),
                figures.p99.as_micros(),
                micros(figures.server_cpu),
                micros(figures.redis_cpu),
                micros(figures.wrk_cpu),
            );
            table.push((scenario.name, connections, figures));
        }
        println!();
        all_rounds.extend(
            measured
                .into_iter()
                .map(|(name, rounds)| ((connections, name), rounds)),
        );
    }

    println!("load average {}\n", load_average());
    print_ratios(&all_rounds);
    write_csv(&target.join("http_load.csv"), &table);

    if !invalid.is_empty() {
        eprintln!("\n{} invalid runs:", invalid.len());
        for line in &invalid {
            eprintln!("  {line}");
        }
        // Returned, not `exit`ed, so the server and Redis are stopped.
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Why a run does not measure what it claims to, if it does not.
fn check(
    scenario: &Scenario,
    connections: usize,
    report: &wrk::Report,
    ran: u64,
) -> Option<String> {
    if report.requests == 0 {
        return Some("no request completed".into());
    }
    if report.status_errors > 0 {
        return Some(format!(
            "{} responses of status 400 or more",
            report.status_errors
        ));
    }
    if report.socket_errors > 0 {
        return Some(format!("{} socket errors", report.socket_errors));
    }
    if scenario.runs_handler {
        // Requests still in flight when wrk stops ran but are not counted.
        let most = report.requests + connections as u64;
        if ran < report.requests || ran > most {
            return Some(format!(
                "the handler ran {ran} times for {} requests",
                report.requests
            ));
        }
    } else if ran > 0 {
        return Some(format!("the handler ran {ran} times during replays"));
    }
    None
}

/// The machine's load over the last 1, 5 and 15 minutes: how much else ran.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|line| line.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Throughput ratios, each the median over rounds of the ratio of two
/// scenarios measured one after the other in the same round (so a burst of
/// load from elsewhere moves both), with the lowest and highest round; and
/// the inverse ratio of their CPU per request (server, Redis and `wrk`
/// together), what the throughput ratio would be if these three processes had
/// the two cores to themselves.
fn print_ratios(rounds: &BTreeMap<(usize, &str), Vec<Measured>>) {
    let ratio = |ours: &str, reference: &str, connections: usize| -> Option<(f64, f64, f64)> {
        let (ours, reference) = (
            rounds.get(&(connections, ours))?,
            rounds.get(&(connections, reference))?,
        );
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(reference)
            .map(|(ours, reference)| ours.report.per_sec() / reference.report.per_sec())
            .collect();
        ratios.sort_by(f64::total_cmp);
        Some((
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        ))
    };
    let cpu_per_request = |name: &str, connections: usize| -> Option<f64> {
        let rounds = rounds.get(&(connections, name))?;
        let cpu: Duration = rounds
            .iter()
            .map(|m| m.server_cpu + m.redis_cpu + m.report.cpu)
            .sum();
        let requests: u64 = rounds.iter().map(|m| m.report.requests).sum();
        Some(cpu.as_secs_f64() / requests.max(1) as f64)
    };
    let comparisons: [(&str, &str, Option<f64>); 7] = [
        (MEMORY_REPLAY, PLAIN, Some(0.7)),
        (MEMORY_FIRST, PLAIN, Some(0.5)),
        (REDIS_REPLAY, REDIS_GET, Some(0.8)),
        (REDIS_FIRST, REDIS_GET, None),
        (PEER_REPLAY, PLAIN, None),
        (PEER_FIRST, PLAIN, None),
        (REDIS_GET, PLAIN, None),
    ];
    println!(
        "ratios of req/s, median over rounds of the ratio within a round [lowest-highest round]:"
    );
    for connections in CONNECTIONS {
        for (ours, reference, target) in comparisons {
            let Some((median, low, high)) = ratio(ours, reference, connections) else {
                continue;
            };
            let verdict = match target {
                Some(target) if median >= target => format!("target >= {target}: met"),
                Some(target) => format!("target >= {target}: NOT met"),
                None => String::new(),
            };
            let by_cpu = cpu_per_request(reference, connections).unwrap_or(f64::NAN)
                / cpu_per_request(ours, connections).unwrap_or(f64::NAN);
            println!(
                "  c={connections:<3} {:<50} {median:.2} [{low:.2}-{high:.2}]  by CPU {by_cpu:.2}  {verdict}",
                format!("{ours} / {reference}")
            );
        }
    }
}

fn write_csv(path: &Path, table: &[(&str, usize, Figures)]) {
    let mut csv = String::from(
        "scenario,connections,requests_per_sec,p50_us,p99_us,server_cpu_us,redis_cpu_us,wrk_cpu_us\n",
    );
    for (name, connections, figures) in table {
        csv.push_str(&format!(
            "\"{name}\",{connections},{:.0},{},{},{:.2},{:.2},{:.2}\n",
            figures.per_sec,
            figures.p50.as_micros(),
            figures.p99.as_micros(),
            micros(figures.server_cpu),
            micros(figures.redis_cpu),
            micros(figures.wrk_cpu),
        ));
    }
    std::fs::write(path, csv).expect("write the CSV");
    println!("\nCSV: {}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(requests: u64) -> wrk::Report {
        wrk::Report {
            requests,
            duration: Duration::from_secs(1),
            ..wrk::Report::default()
        }
    }

    #[test]
    fn a_replay_that_ran_the_handler_is_refused() {
        let replay = &SCENARIOS[1];
        assert!(!replay.runs_handler);
        assert!(check(replay, 16, &report(1000), 0).is_none());
        let why = check(replay, 16, &report(1000), 3).expect("refused");
        assert!(why.contains("ran 3 times"), "{why}");
    }

    #[test]
    fn a_first_run_must_run_the_handler_once_per_request() {
        let first = &SCENARIOS[2];
        assert!(first.fresh && first.runs_handler);
        // Up to one request per connection may still be in flight at the end.
        assert!(check(first, 16, &report(1000), 1000).is_none());
        assert!(check(first, 16, &report(1000), 1016).is_none());
        assert!(check(first, 16, &report(1000), 999).is_some());
        assert!(check(first, 16, &report(1000), 1017).is_some());
    }

    #[test]
    fn error_statuses_and_socket_errors_invalidate_a_run() {
        let plain = &SCENARIOS[0];
        let mut refused = report(1000);
        refused.status_errors = 1;
        assert!(check(plain, 1, &refused, 1000).is_some());
        let mut broken = report(1000);
        broken.socket_errors = 2;
        assert!(check(plain, 1, &broken, 1000).is_some());
        assert!(check(plain, 1, &report(0), 0).is_some());
    }
}
