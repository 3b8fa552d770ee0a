//! Where the Postgres tests run: a fresh schema per test, on the database at
//! `DATABASE_URL` when it is set, else on a private server shared by the
//! test binary (`idempotent_test_support::postgres`).

#![allow(dead_code)] // each test binary uses its own subset

pub mod drivers;
pub mod gate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use idempotent_postgres::tokio_postgres::{self, NoTls};
use idempotent_postgres::PostgresBackend;
use idempotent_test_support::postgres::PostgresServer;

/// A schema of its own for one test, dropped (with everything in it) when
/// the test ends.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// A new, not yet created, schema name on the test database.
    pub fn new() -> TestDb {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => PostgresServer::shared().url(),
        };
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        // Unique across concurrent runs sharing a DATABASE_URL, and across
        // runs that crashed before dropping their schemas.
        let schema = format!(
            "idempotent_test_{:x}_{millis:x}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        TestDb { url, schema }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A backend on this test's schema, migrated.
    pub async fn backend(&self) -> PostgresBackend {
        let backend = PostgresBackend::connect(&self.url)
            .await
            .expect("connect to the test database")
            .with_schema(&self.schema);
        backend.migrate().await.expect("migrate the test schema");
        backend
    }

    /// The records table of [`backend`](Self::backend), quoted.
    pub fn records(&self) -> String {
        format!("\"{}\".idempotent_records", self.schema)
    }

    /// A plain connection whose `search_path` is this test's schema (which
    /// it creates if needed), for setting up tables and looking behind the
    /// store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        let client = connect(&self.url).await;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{0}\"; SET search_path TO \"{0}\"",
                self.schema
            ))
            .await
            .expect("use the test schema");
        client
    }
}

impl Drop for TestDb {
    /// Drops the schema on a thread of its own: `Drop` may run inside a
    /// test's runtime, which cannot block on another.
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!(
            "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        );
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test schema");
            runtime.block_on(async {
                let client = connect(&url).await;
                client.batch_execute(&sql).await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop the test schema {}: {error}", self.schema);
        }
    }
}

/// A plain connection, its connection task spawned on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test database: {error}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
