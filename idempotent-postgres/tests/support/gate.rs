//! Gates: triggers that make a transaction wait, at a chosen point, on an
//! advisory lock the test holds, so the test can crash a client exactly
//! there; and finding and ending a client's server process.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use idempotent_postgres::tokio_postgres::Client;

/// Where a gate stops a transactional call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Inside the completion statement, after the record's row was updated
    /// (an `AFTER UPDATE` trigger): the body's writes and the completed
    /// record exist in the transaction, nothing is committed.
    Completion,
    /// Inside `COMMIT`, before it is durable (a deferred constraint trigger
    /// on the effects table runs at commit).
    Commit,
}

/// A gate installed in a test's schema. The test holds its lock (a
/// session-level advisory lock on its own connection) from
/// [`Gate::install`] until [`Gate::open`].
pub struct Gate {
    key: i64,
    control: Client,
}

impl Gate {
    /// Creates the trigger for `point` on `records` (the records table) or
    /// `effects` (the test's table), and closes the gate.
    ///
    /// `client` must have the test's schema on its `search_path`.
    pub async fn install(client: Client, point: Point, records: &str, effects: &str) -> Gate {
        // Advisory locks are global to the server: a key per gate, so tests
        // running in parallel never wait on each other's gates.
        static NEXT: AtomicI64 = AtomicI64::new(1);
        let key = i64::from(std::process::id()) << 20 | NEXT.fetch_add(1, Ordering::Relaxed);
        let function = format!(
            "CREATE FUNCTION gate_{point:?}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_advisory_xact_lock({key}); RETURN NULL; END $$;"
        );
        let trigger = match point {
            Point::Completion => format!(
                "CREATE TRIGGER gate AFTER UPDATE ON {records} FOR EACH ROW
                 WHEN (NEW.state = 'completed') EXECUTE FUNCTION gate_{point:?}();"
            ),
            Point::Commit => format!(
                "CREATE CONSTRAINT TRIGGER gate AFTER INSERT ON {effects}
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gate_{point:?}();"
            ),
        };
        client
            .batch_execute(&format!("{function}{trigger}"))
            .await
            .expect("install the gate");
        client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .expect("close the gate");
        Gate {
            key,
            control: client,
        }
    }

    /// Waits until a connection named `application_name` waits at the gate;
    /// returns its server process id.
    pub async fn wait_for_arrival(&self, application_name: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let row = self
                .control
                .query_opt(
                    "SELECT pid FROM pg_stat_activity
                      WHERE application_name = $1 AND wait_event = 'advisory'",
                    &[&application_name],
                )
                .await
                .expect("read pg_stat_activity");
            if let Some(row) = row {
                return row.get(0);
            }
            assert!(
                Instant::now() < deadline,
                "no connection of {application_name} reached the gate within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets waiting transactions through.
    pub async fn open(&self) {
        self.control
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
            .expect("open the gate");
    }

    /// The connection the gate was installed with.
    pub fn client(&self) -> &Client {
        &self.control
    }
}

/// Ends the server process `pid` (as if its client's connection broke), and
/// waits until it is gone, so its transaction has been rolled back.
pub async fn terminate(client: &Client, pid: i32) {
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate the backend");
    wait_until_gone(client, pid).await;
}

/// Waits until server process `pid` has exited.
pub async fn wait_until_gone(client: &Client, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .expect("read pg_stat_activity")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "server process {pid} did not exit within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
