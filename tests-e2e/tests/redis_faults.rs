//! Real failures on private redis-servers, no mocks: killed and restarted
//! servers (with and without an append-only file), a server frozen with
//! SIGSTOP, and a claim holder in another process frozen with SIGSTOP.
//!
//! Each test says what it proves. Counters from `idempotent_core::stats()`
//! are process-wide and the tests of this binary run in parallel, so they are
//! only compared as "grew" (`after.x > before.x`); exact counts come from the
//! body-run counters of each test, from the test's own private server, or from
//! the `stall-worker` process, which makes exactly one call and prints its
//! own counters.
//!
//! Timing: leases of 1 s (2 s where the Redis response timeout of 2 s must
//! fit inside a lease), every fault several times longer or shorter than the
//! bound it is tested against, and every wait bounded.

mod support;

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use idempotent_core::{stats, Error, Idempotency, Stats};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisOptions, RedisServer};
use support::Runs;
use tokio::sync::{mpsc, oneshot};

const SCOPE: &str = "tests::redis_faults";
/// The scope of the `stall-worker` binary (src/bin/stall_worker.rs).
const STALL_SCOPE: &str = "tests::redis_faults::stall";
const LEASE: Duration = Duration::from_secs(1);
/// How long a killed server stays down before a restart that the call should
/// survive: well inside a 5 s lease.
const SHORT_OUTAGE: Duration = Duration::from_millis(500);
/// How long to keep retrying a call that fails closed (`Error::Backend`)
/// while the backend reconnects after a restart.
const RECONNECT_BOUND: Duration = Duration::from_secs(20);

/// One idempotent call with `lease` whose fingerprint is its key.
async fn call<F, Fut>(
    store: &RedisBackend,
    lease: Duration,
    key: &str,
    body: F,
) -> Result<String, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, Error>>,
{
    Idempotency::new(store)
        .scope(SCOPE)
        .lease(lease)
        .run(key, key, body)
        .await
}

/// A body that records its run and returns `"run N"`.
fn counted(runs: &Runs) -> impl FnOnce() -> std::future::Ready<Result<String, Error>> + '_ {
    move || std::future::ready(Ok(format!("run {}", runs.record())))
}

/// A body that must not run: a replay.
fn not_run() -> std::future::Ready<Result<String, Error>> {
    std::future::ready(Ok("the body ran although a result was stored".to_owned()))
}

/// Retries `attempt` while it fails closed with `Error::Backend` (the body
/// did not run then): the backend reconnects by itself after a restart, and
/// the first calls may still see the dead connection.
async fn once_reachable<F, Fut>(mut attempt: F) -> Result<String, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<String, Error>>,
{
    let deadline = Instant::now() + RECONNECT_BOUND;
    loop {
        match attempt().await {
            Err(Error::Backend(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => return outcome,
        }
    }
}

async fn connect(url: &str) -> RedisBackend {
    RedisBackend::connect(url)
        .await
        .expect("connect to the private redis-server")
}

/// The Redis key of the record of `key` (whose fingerprint is the key too).
fn record_key(store: &RedisBackend, scope: &'static str, key: &str) -> String {
    let call = Idempotency::new(store).scope(scope).prepare(key, key);
    store.record_key(call.stored_key().expect("a string key serializes"))
}

/// The record's state on the server: `Some("P")`, `Some("C")` or `None`
/// (the state is the byte after the `idem1` format name).
fn record_state(server: &RedisServer, record_key: &str) -> Option<String> {
    let record: Option<Vec<u8>> = server.query(redis::cmd("GET").arg(record_key));
    record.map(|record| String::from_utf8_lossy(&record[5..6]).into_owned())
}

/// The lease end of the claim at `record_key` on the server's clock, in
/// milliseconds, computed as the claim script computes it: the key expires
/// one lease after the lease ends, and the record ends with the lease's
/// length. `None` when the key holds no claim.
fn lease_end(server: &RedisServer, record_key: &str) -> Option<u64> {
    const LEASE_END: &str = r"
local record = redis.call('GET', KEYS[1])
if not record or string.sub(record, 6, 6) ~= 'P' then
    return false
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return now + redis.call('PTTL', KEYS[1]) - tonumber(string.sub(record, 55))
";
    server.query(redis::cmd("EVAL").arg(LEASE_END).arg(1).arg(record_key))
}

/// The server's clock, in milliseconds (the clock of `lease_end`).
fn server_millis(server: &RedisServer) -> u64 {
    let (seconds, micros): (u64, u64) = server.query(&redis::cmd("TIME"));
    seconds * 1_000 + micros / 1_000
}

/// The counters that grew between two snapshots, for the test's log.
fn grown(before: &Stats, after: &Stats) -> String {
    let pairs = [
        ("executions", before.executions, after.executions),
        ("replays", before.replays, after.replays),
        ("takeovers", before.takeovers, after.takeovers),
        ("in_progress", before.in_progress, after.in_progress),
        ("store_errors", before.store_errors, after.store_errors),
        (
            "renew_failures",
            before.renew_failures,
            after.renew_failures,
        ),
        ("leases_lost", before.leases_lost, after.leases_lost),
        ("fenced", before.fenced, after.fenced),
        (
            "complete_retries",
            before.complete_retries,
            after.complete_retries,
        ),
        (
            "results_not_stored",
            before.results_not_stored,
            after.results_not_stored,
        ),
    ];
    let grown: Vec<String> = pairs
        .iter()
        .filter(|(_, before, after)| after > before)
        .map(|(name, before, after)| format!("{name} +{}", after - before))
        .collect();
    format!(
        "[{}] (process-wide: other tests may add to them)",
        grown.join(", ")
    )
}

/// A private server shared with bodies and background tasks that kill,
/// restart, pause or resume it. Its blocking operations run on the blocking
/// pool, never on the task that holds (and renews) a claim.
#[derive(Clone)]
struct SharedServer(Arc<Mutex<RedisServer>>);

impl SharedServer {
    fn start(options: RedisOptions) -> Self {
        Self(Arc::new(Mutex::new(RedisServer::start_with(options))))
    }

    /// For quick synchronous queries; waits while a restart is under way.
    fn lock(&self) -> MutexGuard<'_, RedisServer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn url(&self) -> String {
        self.lock().url()
    }

    async fn with<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut RedisServer) -> T + Send + 'static,
    ) -> T {
        let server = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            operation(&mut server.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .expect("the server operation panicked")
    }

    async fn kill(&self) {
        self.with(RedisServer::kill).await;
    }

    async fn restart(&self) {
        self.with(RedisServer::restart).await;
    }

    async fn pause(&self) {
        self.with(|server| server.pause()).await;
    }

    async fn resume(&self) {
        self.with(|server| server.resume()).await;
    }

    /// Restarts the server `after` the body reports it killed it (through
    /// `killed`). Await the handle before the test ends, so a failed restart
    /// fails the test.
    fn restart_after_kill(
        &self,
        killed: oneshot::Receiver<()>,
        after: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let server = self.clone();
        tokio::spawn(async move {
            if killed.await.is_ok() {
                tokio::time::sleep(after).await;
                server.restart().await;
            }
        })
    }
}

/// 1. Renewal under stress. Lease 1 s, body 5 s: the claim is renewed every
/// 333 ms, so duplicates arriving 1.2, 2.4 and 3.6 s into the body (each
/// later than an unrenewed lease would have lasted) all get
/// `Error::InProgress`, none takes the key over, the body runs once, and a
/// later call replays its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_a_5s_body_on_a_1s_lease_from_being_taken_over() {
    let server = RedisServer::start();
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let (started_tx, started_rx) = oneshot::channel();
    let holder = tokio::spawn({
        let (store, runs) = (store.clone(), runs.clone());
        async move {
            call(&store, LEASE, "renewed", move || async move {
                let run = runs.record();
                let _ = started_tx.send(Instant::now());
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(format!("run {run}"))
            })
            .await
        }
    });
    let started = started_rx.await.expect("the body started");
    server.reset_stats();

    let mut answered_at = Vec::new();
    for duplicate in 1..=3 {
        tokio::time::sleep_until((started + Duration::from_millis(1_200) * duplicate).into()).await;
        let outcome = call(&store, LEASE, "renewed", counted(&runs)).await;
        assert!(
            matches!(outcome, Err(Error::InProgress)),
            "duplicate {duplicate} at {:?}: {outcome:?}",
            started.elapsed()
        );
        answered_at.push(started.elapsed());
    }

    let held = holder.await.expect("the holder's task");
    assert_eq!(held.expect("the holder's call"), "run 1");
    let body_took = started.elapsed();
    assert_eq!(runs.count(), 1, "the body ran once");
    assert_eq!(
        call(&store, LEASE, "renewed", not_run).await.unwrap(),
        "run 1",
        "a later call replays"
    );
    assert_eq!(runs.count(), 1);
    eprintln!(
        "renewal: duplicates answered InProgress at {answered_at:?}; the holder returned after \
         {body_took:?}; {} EVALSHA from the body's start to the replay (3 duplicate claims, \
         the renewals, the completion, the replay)",
        server.command_count("evalsha")
    );
}

/// A `stall-worker` process; killed (SIGKILL, then reaped) when dropped, so a
/// failing test leaves no stray process, even a frozen one.
struct StallWorker {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl StallWorker {
    fn spawn(url: &str, key: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stall-worker"))
            .args([url, key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the stall-worker process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut text = String::new();
                let _ = stderr_pipe.read_to_string(&mut text);
                stderr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&text);
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn next_line(&mut self, within: Duration) -> String {
        match tokio::time::timeout(within, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "the stall-worker closed its stdout early: {:?}\nstderr:\n{}",
                self.child.try_wait(),
                self.stderr()
            ),
            Err(_) => panic!(
                "no line from the stall-worker within {within:?}\nstderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// `kill -<signal> <pid>`: SIGSTOP freezes the whole process (its timers,
    /// its renewal, its connection), SIGCONT lets it run on.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .status()
            .expect("run `kill`");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the stall-worker") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the stall-worker did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StallWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 2. A stale holder fenced with a real pause. A `stall-worker` process claims
/// a key (lease 1 s) and starts a 3 s body; the test freezes the whole process
/// with SIGSTOP for 2.5 s, so it can neither renew nor complete. As soon as
/// the worker's lease has ended on the server's clock, while its claim is
/// still stored (claims expire one lease after their lease end), the test
/// calls with the same key: it TAKES THE CLAIM OVER (a takeover is expected,
/// not a fresh claim) and completes with "new holder's result". After SIGCONT
/// the worker finishes: its renewal and its completion are fenced (its own
/// counters, printed by the worker, show it), it still returns its own
/// "stale holder's result", and a replay returns the new holder's result: the
/// record was not overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_frozen_by_sigstop_past_its_lease_is_fenced_by_the_new_holder() {
    const FREEZE: Duration = Duration::from_millis(2_500);
    let server = RedisServer::start();
    let store = connect(&server.url()).await;
    let key = "stalled";
    let record = record_key(&store, STALL_SCOPE, key);
    let new_holder = |body_result: &'static str| {
        let store = &store;
        async move {
            Idempotency::new(store)
                .scope(STALL_SCOPE)
                .lease(LEASE)
                .run(key, key, || async move {
                    Ok::<_, Error>(body_result.to_owned())
                })
                .await
        }
    };

    let mut worker = StallWorker::spawn(&server.url(), key);
    assert_eq!(worker.next_line(Duration::from_secs(30)).await, "claimed");
    worker.signal("STOP");
    let frozen_at = Instant::now();

    // Wait until the worker's lease has ended on the server's clock.
    let (claim_ttl_left, lease_end) = loop {
        let lease_end = lease_end(&server, &record).expect("the worker's claim is stored");
        if server_millis(&server) > lease_end {
            let ttl: i64 = server.query(redis::cmd("PTTL").arg(&record));
            break (ttl, lease_end);
        }
        assert!(
            frozen_at.elapsed() < FREEZE,
            "the worker's 1 s lease did not end within {FREEZE:?} of freezing it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        claim_ttl_left > 300,
        "the lapsed claim is still stored for {claim_ttl_left} ms, so the next call takes it over"
    );
    let before = stats();
    let newer = new_holder("new holder's result").await;
    let after = stats();
    assert_eq!(newer.expect("the new holder's call"), "new holder's result");
    assert!(
        after.takeovers > before.takeovers,
        "the new holder took the lapsed claim over: {}",
        grown(&before, &after)
    );
    let took_over_after = frozen_at.elapsed();
    assert!(
        took_over_after < FREEZE,
        "the worker was still frozen when the key was taken over ({took_over_after:?})"
    );

    tokio::time::sleep_until((frozen_at + FREEZE).into()).await;
    worker.signal("CONT");
    let done = worker.next_line(Duration::from_secs(20)).await;
    let status = worker.exit_status(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "the worker failed: {status}\n{}",
        worker.stderr()
    );

    let fields: Vec<&str> = done.split('\t').collect();
    assert_eq!(fields.first(), Some(&"done"), "{done}");
    assert_eq!(
        fields.get(1),
        Some(&"ok=stale holder's result"),
        "the stale holder gets its own result: {done}"
    );
    let counter = |name: &str| -> u64 {
        fields
            .iter()
            .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {done}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(counter("executions"), 1, "{done}");
    assert_eq!(counter("takeovers"), 0, "{done}");
    assert_eq!(counter("fenced"), 1, "its completion was fenced: {done}");
    assert!(
        counter("leases_lost") <= 1,
        "at most its first renewal after SIGCONT finds the claim taken over: {done}"
    );
    assert_eq!(counter("results_not_stored"), 0, "{done}");

    assert_eq!(
        new_holder("the body ran again").await.unwrap(),
        "new holder's result",
        "the record kept the new holder's result"
    );
    assert_eq!(record_state(&server, &record).as_deref(), Some("C"));
    eprintln!(
        "stale holder: frozen for {FREEZE:?}; its lease ended at server ms {lease_end}, the \
         lapsed claim still had {claim_ttl_left} ms to live; taken over {took_over_after:?} \
         after the freeze; worker's own report: {done}"
    );
}

/// 3a. A completion that cannot be stored, then can. The body kills the
/// server (AOF with `appendfsync always`, so the claim survives) and returns;
/// the server is restarted 0.5 s later, well inside the 5 s lease. The call
/// returns its own `Ok`; the runtime retried the completion until the server
/// was back (`complete_retries` grew) and stored it: a later call replays and
/// the body ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_retried_across_a_short_restart_is_stored() {
    let server = SharedServer::start(RedisOptions {
        appendonly_always: true,
        ..RedisOptions::default()
    });
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let (killed_tx, killed_rx) = oneshot::channel();
    let restarted = server.restart_after_kill(killed_rx, SHORT_OUTAGE);

    let before = stats();
    let started = Instant::now();
    let outcome = call(&store, Duration::from_secs(5), "short-outage", || {
        let (server, runs) = (server.clone(), runs.clone());
        async move {
            let run = runs.record();
            server.kill().await;
            let _ = killed_tx.send(());
            Ok(format!("run {run}"))
        }
    })
    .await;
    let took = started.elapsed();
    let after = stats();
    restarted.await.expect("the restart");

    assert_eq!(outcome.expect("the caller gets its own result"), "run 1");
    assert!(
        after.complete_retries > before.complete_retries,
        "the completion was retried: {}",
        grown(&before, &after)
    );
    let record = record_key(&store, SCOPE, "short-outage");
    assert_eq!(
        record_state(&server.lock(), &record).as_deref(),
        Some("C"),
        "the result is stored"
    );
    assert_eq!(
        call(&store, LEASE, "short-outage", not_run).await.unwrap(),
        "run 1",
        "a later call replays"
    );
    assert_eq!(runs.count(), 1, "the body ran once");
    eprintln!(
        "short outage: the call returned after {took:?}; counters {}",
        grown(&before, &after)
    );
}

/// 3b. A store down past the lease. Lease 1 s: the body kills the server,
/// which stays down for 3 s. The caller still gets its own `Ok`; the runtime
/// retries the completion only while the claim is known to hold (until its
/// lease ends), then gives up and counts `results_not_stored`. While the
/// server is down, a retry fails closed (`Error::Backend`, the body does not
/// run).
///
/// After the restart, a retry RUNS THE BODY AGAIN, with or without
/// persistence: that is the honest, documented behaviour when a result could
/// not be stored.
/// - Without persistence (this test) the restarted server has no record at
///   all, so the retry claims the key afresh at once.
/// - With AOF the claim comes back exactly as it was, with its absolute lease
///   end and its expiry (two leases after the last claim or renewal): a
///   server back before the lease end would answer `InProgress` until then
///   (but then the completion retries would have stored the result); back
///   between the lease end and two leases, a retry takes the lapsed claim
///   over; back later, as here (3 s > 2 x 1 s), the claim has expired and the
///   retry claims afresh (see the `_with_aof` test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_past_the_lease_leaves_the_result_unstored_and_a_retry_runs_again() {
    store_down_past_the_lease(RedisOptions::default()).await;
}

/// 3b, with AOF (`appendfsync always`): the claim is persisted, but after 3 s
/// down (more than two 1 s leases) it has expired when the server reloads it,
/// so the outcome is the same as without persistence: the result was not
/// stored, and the retry claims afresh and runs the body again (it is not
/// answered `InProgress`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_past_the_lease_with_aof_leaves_the_result_unstored_too() {
    store_down_past_the_lease(RedisOptions {
        appendonly_always: true,
        ..RedisOptions::default()
    })
    .await;
}

async fn store_down_past_the_lease(options: RedisOptions) {
    const OUTAGE: Duration = Duration::from_secs(3);
    let persistent = options.appendonly_always;
    let server = SharedServer::start(options);
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let key = "long-outage";

    let before = stats();
    let started = Instant::now();
    let mut killed_at = None;
    let outcome = call(&store, LEASE, key, || {
        let (server, runs, killed_at) = (server.clone(), runs.clone(), &mut killed_at);
        async move {
            let run = runs.record();
            server.kill().await;
            *killed_at = Some(Instant::now());
            Ok(format!("run {run}"))
        }
    })
    .await;
    let took = started.elapsed();
    let after = stats();
    let killed_at = killed_at.expect("the body killed the server");
    assert_eq!(outcome.expect("the caller gets its own result"), "run 1");
    assert!(
        after.results_not_stored > before.results_not_stored,
        "the result was counted as not stored: {}",
        grown(&before, &after)
    );
    assert!(
        killed_at.elapsed() < OUTAGE,
        "the call gave up on storing its result after {took:?}, before the server came back"
    );

    let while_down = call(&store, LEASE, key, counted(&runs)).await;
    assert!(
        matches!(while_down, Err(Error::Backend(_))),
        "a retry while the server is down fails closed: {while_down:?}"
    );
    assert_eq!(
        runs.count(),
        1,
        "the body did not run while the server was down"
    );

    tokio::time::sleep_until((killed_at + OUTAGE).into()).await;
    server.restart().await;
    let record = record_key(&store, SCOPE, key);
    assert_eq!(
        record_state(&server.lock(), &record),
        None,
        "after {OUTAGE:?} down the restarted server holds no record for the key \
         (persistent: {persistent})"
    );
    let retry = once_reachable(|| call(&store, LEASE, key, counted(&runs))).await;
    assert_eq!(
        retry.expect("a retry after the restart"),
        "run 2",
        "the retry runs the body again"
    );
    assert_eq!(
        call(&store, LEASE, key, not_run).await.unwrap(),
        "run 2",
        "then its result is stored and replayed"
    );
    assert_eq!(runs.count(), 2);
    eprintln!(
        "down past the lease (AOF: {persistent}): the call returned its own result after \
         {took:?} with the server down; counters {}",
        grown(&before, &after)
    );
}

/// 4a. Kill during a body, no persistence. Lease 1 s, body 2 s: the server is
/// killed as the body starts and restarted 0.5 s later, empty. The caller
/// gets its own `Ok`, but the restarted server forgot the claim, so the
/// holder's renewals and its completion find no claim with its token: they
/// are fenced (counted as `leases_lost` and `fenced`, as if another call had
/// taken the key over), and the result is NOT stored. The next call claims
/// the key afresh and runs the body again; its result is then stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_the_body_without_persistence_forgets_the_call() {
    let server = SharedServer::start(RedisOptions::default());
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let key = "killed-during-body";
    let (killed_tx, killed_rx) = oneshot::channel();
    let restarted = server.restart_after_kill(killed_rx, SHORT_OUTAGE);

    let before = stats();
    let outcome = call(&store, LEASE, key, || {
        let (server, runs) = (server.clone(), runs.clone());
        async move {
            let run = runs.record();
            server.kill().await;
            let _ = killed_tx.send(());
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(format!("run {run}"))
        }
    })
    .await;
    let after = stats();
    restarted.await.expect("the restart");

    assert_eq!(outcome.expect("the caller gets its own result"), "run 1");
    let record = record_key(&store, SCOPE, key);
    assert_eq!(
        record_state(&server.lock(), &record),
        None,
        "the result was not stored: the restarted server forgot the claim"
    );
    assert!(
        after.fenced > before.fenced || after.results_not_stored > before.results_not_stored,
        "the completion was refused or abandoned: {}",
        grown(&before, &after)
    );
    let next = once_reachable(|| call(&store, LEASE, key, counted(&runs))).await;
    assert_eq!(
        next.expect("the next call"),
        "run 2",
        "the next call runs again"
    );
    assert_eq!(
        call(&store, LEASE, key, not_run).await.unwrap(),
        "run 2",
        "and its result is stored"
    );
    assert_eq!(runs.count(), 2);
    eprintln!(
        "killed during the body: counters {}",
        grown(&before, &after)
    );
}

/// 4b. Kill and restart between calls. 100 calls complete; the server is
/// killed (SIGKILL) and restarted on the same port and directory. With AOF
/// (`appendfsync always`) every completed record survives and all 100 are
/// replayed (no body runs again); without persistence the restarted server
/// has forgotten them all and every body runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_records_survive_a_kill_with_aof_and_are_forgotten_without_it() {
    const KEYS: usize = 100;
    let scenario = |appendonly_always: bool| async move {
        let mut server = RedisServer::start_with(RedisOptions {
            appendonly_always,
            ..RedisOptions::default()
        });
        let store = connect(&server.url()).await;
        let runs = Runs::default();
        let keys: Vec<String> = (0..KEYS).map(|key| format!("between-{key}")).collect();
        let mut first = Vec::new();
        for key in &keys {
            first.push(call(&store, LEASE, key, counted(&runs)).await.unwrap());
        }
        assert_eq!(runs.count(), KEYS);
        let stored_keys: u64 = server.query(&redis::cmd("DBSIZE"));
        server.kill();
        server.restart();
        let restored_keys: u64 = server.query(&redis::cmd("DBSIZE"));
        let mut again = Vec::new();
        for key in &keys {
            again.push(
                once_reachable(|| call(&store, LEASE, key, counted(&runs)))
                    .await
                    .unwrap(),
            );
        }
        eprintln!(
            "kill between calls (AOF: {appendonly_always}): {stored_keys} keys before the \
             kill, {restored_keys} after the restart; {} bodies ran in total for {KEYS} keys",
            runs.count()
        );
        (first, again, runs.count())
    };
    let ((aof_first, aof_again, aof_runs), (plain_first, plain_again, plain_runs)) =
        tokio::join!(scenario(true), scenario(false));

    assert_eq!(aof_again, aof_first, "with AOF every record is replayed");
    assert_eq!(aof_runs, KEYS, "with AOF no body ran again");

    assert_eq!(
        plain_runs,
        2 * KEYS,
        "without persistence every body ran again"
    );
    assert!(
        plain_first
            .iter()
            .zip(&plain_again)
            .all(|(first, again)| first != again),
        "without persistence every key got a new result"
    );
}

/// 5a. The server frozen with SIGSTOP during a body, for longer than TWO
/// leases since the last renewal: lease 1 s, body 4 s, the server paused
/// 0.3 s into the body for 2.5 s. The renewal sent into the pause times out
/// after the 2 s response timeout (`renew_failures` grew); the body keeps
/// running and the call returns its own `Ok`.
///
/// But the claim does not survive: Redis expires keys by its wall clock, and
/// the claim key's expiry (two leases after the claim, 2 s) passed while the
/// server was frozen (2.8 s). On SIGCONT the claim is gone, so the holder's
/// next renewal and its completion are fenced (although nobody took the key
/// over), the result is not stored, and the next call runs the body again.
/// Test 5b shows the pause that the claim does survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_paused_past_two_leases_forgets_the_claim_and_the_result_is_not_stored() {
    let server = SharedServer::start(RedisOptions::default());
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let key = "paused-past-two-leases";
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let pauser = tokio::spawn({
        let server = server.clone();
        async move {
            started_rx.await.expect("the body started");
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.pause().await;
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            server.resume().await;
        }
    });

    let before = stats();
    let outcome = call(&store, LEASE, key, || {
        let runs = runs.clone();
        async move {
            let run = runs.record();
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(format!("run {run}"))
        }
    })
    .await;
    let after = stats();
    pauser.await.expect("the pause");

    assert_eq!(outcome.expect("the caller gets its own result"), "run 1");
    assert!(
        after.renew_failures > before.renew_failures,
        "the renewal sent into the pause timed out: {}",
        grown(&before, &after)
    );
    let record = record_key(&store, SCOPE, key);
    assert_eq!(
        record_state(&server.lock(), &record),
        None,
        "the claim expired while the server was frozen, so the result was not stored"
    );
    assert_eq!(
        call(&store, LEASE, key, counted(&runs)).await.unwrap(),
        "run 2",
        "the next call runs the body again"
    );
    assert_eq!(runs.count(), 2);
    eprintln!(
        "server paused past two leases: counters {}",
        grown(&before, &after)
    );
}

/// 5b. The server frozen with SIGSTOP during a body for longer than the lease
/// and than the 2 s response timeout, but resumed before the claim key
/// expires. Lease 2 s (so a 3 s pause fits between one lease and two; with a
/// 1 s lease no pause can be both longer than the 2 s response timeout and
/// shorter than two leases), body 5 s: the test waits until a renewal is
/// stored, then pauses the server for 3 s. The renewal sent into the pause
/// times out (`renew_failures` grew), the body keeps running, the lease ends
/// on the server's clock while it is frozen; after SIGCONT the holder's next
/// renewal and its completion are accepted, because nobody took the lapsed
/// claim over and it still holds the holder's token. The call returns `Ok`,
/// the body ran once, and a later call replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_paused_past_the_lease_keeps_an_untaken_claim_for_its_holder() {
    const LONG_LEASE: Duration = Duration::from_secs(2);
    const PAUSE: Duration = Duration::from_secs(3);
    let server = SharedServer::start(RedisOptions::default());
    let store = connect(&server.url()).await;
    let runs = Runs::default();
    let key = "paused-past-the-lease";
    let record = record_key(&store, SCOPE, key);
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let pauser = tokio::spawn({
        let (server, record) = (server.clone(), record.clone());
        async move {
            started_rx.await.expect("the body started");
            let lease_end =
                |server: &RedisServer| lease_end(server, &record).expect("the claim is stored");
            let claimed_until = lease_end(&server.lock());
            let deadline = Instant::now() + 2 * LONG_LEASE;
            let renewed_until = loop {
                let until = lease_end(&server.lock());
                // A renewal moves the end by lease/3 (667 ms); reading it
                // through PTTL jitters by a millisecond or two.
                if until > claimed_until + 100 {
                    break until;
                }
                assert!(Instant::now() < deadline, "no renewal was stored");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            server.pause().await;
            tokio::time::sleep(PAUSE).await;
            server.resume().await;
            let resumed_at = server_millis(&server.lock());
            (renewed_until, resumed_at)
        }
    });

    let before = stats();
    let outcome = call(&store, LONG_LEASE, key, || {
        let runs = runs.clone();
        async move {
            let run = runs.record();
            let _ = started_tx.send(());
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(format!("run {run}"))
        }
    })
    .await;
    let after = stats();
    let (lease_end_at_pause, resumed_at) = pauser.await.expect("the pause");

    assert!(
        resumed_at > lease_end_at_pause,
        "the lease ended while the server was frozen (lease end {lease_end_at_pause}, \
         resumed at {resumed_at})"
    );
    assert_eq!(outcome.expect("the holder's call"), "run 1");
    assert!(
        after.renew_failures > before.renew_failures,
        "the renewal sent into the pause timed out: {}",
        grown(&before, &after)
    );
    assert_eq!(
        record_state(&server.lock(), &record).as_deref(),
        Some("C"),
        "the holder's result is stored"
    );
    assert_eq!(
        call(&store, LONG_LEASE, key, not_run).await.unwrap(),
        "run 1",
        "a later call replays"
    );
    assert_eq!(runs.count(), 1, "the body ran once");
    eprintln!(
        "server paused past the lease: resumed {} ms after the lease end; counters {}",
        resumed_at - lease_end_at_pause,
        grown(&before, &after)
    );
}
