//! The transactional mode against real crashes: a helper process runs a
//! transactional call and is killed (SIGKILL) at each point between its
//! claim and its commit. Whatever the point, the body's write and the
//! completed record are both committed or both absent, and a retry then
//! leaves exactly one write.
//!
//! The helper is this test binary itself, started with `HELPER_ENV` set and
//! filtered to [`helper_process_entry_point`]; it prints `HELPER <step>`
//! lines as it goes, and the points inside the completion statement and
//! inside `COMMIT` are reached by gates (`support/gate.rs`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use idempotent_core::Error;
use idempotent_postgres::tokio_postgres::Client;
use support::gate::{Gate, Point};
use support::TestDb;

/// Tells this binary to act as the helper: `url\tschema\tstop\tname`.
const HELPER_ENV: &str = "IDEMPOTENT_PG_CRASH_HELPER";
/// The helper's lease: a retry takes its claim over this long after a crash.
const LEASE: Duration = Duration::from_secs(1);
const SCOPE: &str = "crash";

/// Where the helper is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The claim is committed, the body has started, nothing written yet.
    BodyStarted,
    /// The body wrote its effect (uncommitted) and is still running.
    EffectWritten,
    /// In the completion statement, after it updated the record's row.
    InCompletion,
    /// In `COMMIT`, sent but not finished.
    InCommit,
    /// After the commit returned.
    Committed,
}

impl Stop {
    fn parse(name: &str) -> Stop {
        [
            Stop::BodyStarted,
            Stop::EffectWritten,
            Stop::InCompletion,
            Stop::InCommit,
            Stop::Committed,
        ]
        .into_iter()
        .find(|stop| format!("{stop:?}") == name)
        .unwrap_or_else(|| panic!("unknown stop {name:?}"))
    }
}

for_each_driver! {
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Idempotency(#[from] Error),
    #[error(transparent)]
    Database(#[from] DbError),
}

/// Not a test: the entry point of the helper process (a no-op unless
/// `HELPER_ENV` is set).
#[test]
fn helper_process_entry_point() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let fields: Vec<&str> = spec.split('\t').collect();
    let [url, schema, stop, name] = fields[..] else {
        panic!("bad {HELPER_ENV}: {spec:?}");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(helper(url, schema, Stop::parse(stop), name));
}

async fn helper(url: &str, schema: &str, stop: Stop, name: &str) {
    let store = store_named_at(url, schema, name, 3);
    let insert = format!("INSERT INTO \"{schema}\".effects VALUES ('helper')");
    let result: Result<String, OrderError> = store
        .transactional()
        .scope(SCOPE)
        .lease(LEASE)
        .run("k", "order", async |tx| {
            say("claimed");
            if stop == Stop::BodyStarted {
                hang().await;
            }
            tx.execute(insert.as_str(), &[]).await?;
            say("wrote");
            if stop == Stop::EffectWritten {
                hang().await;
            }
            Ok("helper".to_owned())
        })
        .await;
    say(&format!("returned {result:?}"));
    hang().await;
}

fn say(step: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "HELPER {step}");
    let _ = stdout.flush();
}

/// Waits to be killed; exits on its own later, so a helper whose test died
/// first does not linger.
async fn hang() -> ! {
    tokio::time::sleep(Duration::from_secs(60)).await;
    std::process::exit(3)
}

/// The helper's test name, in this driver's module: `on_sqlx::helper_process_entry_point`.
fn helper_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, module)| module);
    format!("{module}::helper_process_entry_point")
}

/// The helper process, killed on drop.
struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Helper {
    fn spawn(db: &TestDb, stop: Stop, name: &str) -> Helper {
        let spec = [db.url(), db.schema(), &format!("{stop:?}"), name].join("\t");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &helper_test_name(),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the helper process");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Helper {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line with `HELPER {step}` (the first one shares its line
    /// with libtest's `test helper_process_entry_point ... `).
    fn wait_for(&mut self, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let wanted = format!("HELPER {step}");
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(&wanted);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "the helper did not say {wanted:?}; it said {:#?}",
            self.seen
        );
    }

    /// SIGKILL: the process dies at once, without unwinding, flushing or
    /// closing its connections cleanly.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a crash left behind, before any retry.
#[derive(Debug, PartialEq, Eq)]
struct Left {
    effects: Vec<String>,
    record: Option<String>,
}

async fn left(client: &Client) -> Left {
    let effects = client
        .query("SELECT note FROM effects", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let record = client
        .query_opt(
            "SELECT state FROM idempotent_records WHERE key LIKE $1",
            &[&format!("{SCOPE}:%")],
        )
        .await
        .unwrap()
        .map(|row| row.get(0));
    Left { effects, record }
}

/// Waits until the server has ended every connection of the helper, so
/// each of its transactions has committed or rolled back.
async fn until_disconnected(client: &Client, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if count == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the helper's connections did not end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills the helper at `stop`, checks what it left, retries, and checks that
/// the write happened exactly once. Returns what the crash left.
async fn crash_at(stop: Stop) -> Left {
    let db = TestDb::new();
    let store = store(&db).await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE effects (note text NOT NULL)")
        .await
        .unwrap();
    let name = format!("{}-helper", db.schema());
    let effects = format!("\"{}\".effects", db.schema());
    let gate = match stop {
        Stop::InCompletion => Some(Point::Completion),
        Stop::InCommit => Some(Point::Commit),
        _ => None,
    };
    let gate = match gate {
        Some(point) => Some(Gate::install(db.client().await, point, &db.records(), &effects).await),
        None => None,
    };

    let mut helper = Helper::spawn(&db, stop, &name);
    match stop {
        Stop::BodyStarted => helper.wait_for("claimed"),
        Stop::EffectWritten => helper.wait_for("wrote"),
        Stop::InCompletion | Stop::InCommit => {
            helper.wait_for("wrote");
            gate.as_ref().unwrap().wait_for_arrival(&name).await;
        }
        Stop::Committed => helper.wait_for("returned Ok"),
    }
    helper.kill();
    if let Some(gate) = &gate {
        gate.open().await;
    }
    until_disconnected(&client, &name).await;

    let crashed = left(&client).await;
    let committed = crashed.effects.len() == 1;
    assert!(crashed.effects.len() <= 1, "{stop:?}: {crashed:?}");
    assert_eq!(
        committed,
        crashed.record.as_deref() == Some("completed"),
        "{stop:?}: the effect and the completed record must be committed together: {crashed:?}"
    );

    // A retry after the crash: it waits out the dead helper's lease and runs
    // the body, or replays the committed result.
    let insert = format!("INSERT INTO {effects} VALUES ('retry')");
    let retried: Result<String, OrderError> = store
        .transactional()
        .scope(SCOPE)
        .lease(LEASE)
        .wait(Duration::from_secs(10))
        .run("k", "order", async |tx| {
            tx.execute(insert.as_str(), &[]).await?;
            Ok("retry".to_owned())
        })
        .await;
    let after = left(&client).await;
    assert_eq!(
        after.effects.len(),
        1,
        "{stop:?}: exactly one write in the end: {after:?}"
    );
    assert_eq!(after.record.as_deref(), Some("completed"), "{stop:?}");
    assert_eq!(
        retried.unwrap(),
        after.effects[0],
        "{stop:?}: the retry returns that write's result"
    );
    println!("{stop:?}: the crash left {crashed:?}; after the retry {after:?}");
    crashed
}

fn nothing_but_the_claim() -> Left {
    Left {
        effects: Vec::new(),
        record: Some("running".to_owned()),
    }
}

fn both() -> Left {
    Left {
        effects: vec!["helper".to_owned()],
        record: Some("completed".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_claim_leaves_only_the_claim() {
    assert_eq!(crash_at(Stop::BodyStarted).await, nothing_but_the_claim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_write_leaves_only_the_claim() {
    assert_eq!(crash_at(Stop::EffectWritten).await, nothing_but_the_claim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_completion_leaves_only_the_claim() {
    assert_eq!(crash_at(Stop::InCompletion).await, nothing_but_the_claim());
}

/// The `COMMIT` had reached the server before the kill: the server finishes
/// it, and commits the write and the record together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_in_the_commit_leaves_both() {
    assert_eq!(crash_at(Stop::InCommit).await, both());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_commit_leaves_both() {
    assert_eq!(crash_at(Stop::Committed).await, both());
}
}
