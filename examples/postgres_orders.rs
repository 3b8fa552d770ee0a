//! Orders placed exactly once: the order's rows and its idempotency record
//! commit in one Postgres transaction.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run --example postgres_orders
//! ```
//!
//! The story runs twice, on each store: `PostgresBackend` (tokio-postgres)
//! and `SqlxBackend` (sqlx), sharing one table; only the body's queries are
//! written for each driver.
//!
//! Without `DATABASE_URL` it starts a private PostgreSQL server (`initdb`
//! and `postgres` from the `postgresql` package) in a temporary directory.
//!
//! A client retries an order after a timeout, fires a burst of concurrent
//! duplicates, orders more than is in stock (the failed attempt leaves
//! nothing behind, and the same key succeeds after a restock), and crashes
//! halfway through an order (its rows are rolled back, the retry writes them
//! once). Each order is one row, however often it was sent: the example
//! checks it, and exits with an error otherwise.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency::postgres::sqlx::{self, PgConnection};
use idempotency::postgres::tokio_postgres::{self, Transaction};
use idempotency::postgres::{PostgresBackend, SqlxBackend};
use idempotent_test_support::postgres::PostgresServer;
use serde::{Deserialize, Serialize};

const SCHEMA: &str = "idempotent_example";

#[derive(Clone, Debug, Serialize)]
struct OrderRequest {
    idempotency_key: String,
    sku: String,
    quantity: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: i64,
    sku: String,
    quantity: i32,
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Idempotency(#[from] idempotency::Error),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error("only {available} of {sku} in stock")]
    OutOfStock { sku: String, available: i32 },
    #[error("the process crashed")]
    Crashed,
}

/// Takes the stock and writes the order, in the transaction that also
/// stores the idempotency record (tokio-postgres).
async fn write_order(tx: &Transaction<'_>, req: &OrderRequest) -> Result<Order, OrderError> {
    let taken = tx
        .execute(
            "UPDATE idempotent_example.stock SET available = available - $2
              WHERE sku = $1 AND available >= $2",
            &[&req.sku, &req.quantity],
        )
        .await?;
    if taken == 0 {
        let available = tx
            .query_one(
                "SELECT available FROM idempotent_example.stock WHERE sku = $1",
                &[&req.sku],
            )
            .await?
            .get(0);
        return Err(OrderError::OutOfStock {
            sku: req.sku.clone(),
            available,
        });
    }
    let id = tx
        .query_one(
            "INSERT INTO idempotent_example.orders (idempotency_key, sku, quantity)
             VALUES ($1, $2, $3) RETURNING id",
            &[&req.idempotency_key, &req.sku, &req.quantity],
        )
        .await?
        .get(0);
    Ok(Order {
        id,
        sku: req.sku.clone(),
        quantity: req.quantity,
    })
}

/// The same on sqlx: `&mut *tx` is the executor.
async fn write_order_sqlx(tx: &mut PgConnection, req: &OrderRequest) -> Result<Order, OrderError> {
    let taken = sqlx::query(
        "UPDATE idempotent_example.stock SET available = available - $2
          WHERE sku = $1 AND available >= $2",
    )
    .bind(&req.sku)
    .bind(req.quantity)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 0 {
        let available =
            sqlx::query_scalar("SELECT available FROM idempotent_example.stock WHERE sku = $1")
                .bind(&req.sku)
                .fetch_one(&mut *tx)
                .await?;
        return Err(OrderError::OutOfStock {
            sku: req.sku.clone(),
            available,
        });
    }
    let id = sqlx::query_scalar(
        "INSERT INTO idempotent_example.orders (idempotency_key, sku, quantity)
         VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(&req.idempotency_key)
    .bind(&req.sku)
    .bind(req.quantity)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Order {
        id,
        sku: req.sku.clone(),
        quantity: req.quantity,
    })
}

const SCOPE: &str = "examples::postgres_orders::place_order";

/// A store the story runs on: placing an order in its transactional mode,
/// and crashing halfway through one (the process "dies" after writing the
/// order and before the commit: an error here; a panic or a kill leaves the
/// same, nothing).
trait Shop: Send + Sync + 'static {
    fn place_order(
        &self,
        req: &OrderRequest,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send;
    fn place_order_and_crash(
        &self,
        req: &OrderRequest,
    ) -> impl Future<Output = Result<Order, OrderError>> + Send;
    fn purge_expired(&self) -> impl Future<Output = Result<u64, idempotency::BackendError>> + Send;
}

impl Shop for PostgresBackend {
    async fn place_order(&self, req: &OrderRequest) -> Result<Order, OrderError> {
        self.transactional()
            .scope(SCOPE)
            .wait(Duration::from_secs(10))
            .run(&req.idempotency_key, req, async |tx| {
                write_order(tx, req).await
            })
            .await
    }

    async fn place_order_and_crash(&self, req: &OrderRequest) -> Result<Order, OrderError> {
        self.transactional()
            .scope(SCOPE)
            .run(&req.idempotency_key, req, async |tx| {
                write_order(tx, req).await?;
                Err(OrderError::Crashed)
            })
            .await
    }

    async fn purge_expired(&self) -> Result<u64, idempotency::BackendError> {
        PostgresBackend::purge_expired(self, 1000).await
    }
}

impl Shop for SqlxBackend {
    async fn place_order(&self, req: &OrderRequest) -> Result<Order, OrderError> {
        self.transactional()
            .scope(SCOPE)
            .wait(Duration::from_secs(10))
            .run(&req.idempotency_key, req, async |tx| {
                write_order_sqlx(tx, req).await
            })
            .await
    }

    async fn place_order_and_crash(&self, req: &OrderRequest) -> Result<Order, OrderError> {
        self.transactional()
            .scope(SCOPE)
            .run(&req.idempotency_key, req, async |tx| {
                write_order_sqlx(tx, req).await?;
                Err(OrderError::Crashed)
            })
            .await
    }

    async fn purge_expired(&self) -> Result<u64, idempotency::BackendError> {
        SqlxBackend::purge_expired(self, 1000).await
    }
}

/// The tables, and the stock of a run: 100 mugs and 1 lamp.
async fn stock_up(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS idempotent_example.orders (
                 id bigserial PRIMARY KEY, idempotency_key text NOT NULL,
                 sku text NOT NULL, quantity int NOT NULL);
             CREATE TABLE IF NOT EXISTS idempotent_example.stock (
                 sku text PRIMARY KEY, available int NOT NULL);
             INSERT INTO idempotent_example.stock VALUES ('mug', 100), ('lamp', 1)
             ON CONFLICT (sku) DO UPDATE SET available = excluded.available;",
        )
        .await
}

/// Fails the example when `holds` is false.
fn check(holds: bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if holds {
        Ok(())
    } else {
        Err(format!("the story went wrong: {what}").into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = PostgresServer::start();
            println!(
                "no DATABASE_URL: started a private Postgres on port {}",
                server.port()
            );
            (server.url(), Some(server))
        }
    };
    // Both stores share the records table; the story runs on each in turn.
    let tokio_store = PostgresBackend::connect(&url).await?.with_schema(SCHEMA);
    tokio_store.migrate().await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    let sqlx_store = SqlxBackend::new(pool).with_schema(SCHEMA);
    sqlx_store.migrate().await?;
    let client = tokio_store.pool().get().await?;
    println!("== tokio-postgres (PostgresBackend)");
    story(&client, Arc::new(tokio_store), "tokio").await?;
    println!("== sqlx (SqlxBackend)");
    story(&client, Arc::new(sqlx_store), "sqlx").await?;
    Ok(())
}

async fn story(
    client: &tokio_postgres::Client,
    store: Arc<impl Shop>,
    driver: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    stock_up(client).await?;
    // Fresh keys per run, so every run tells the whole story.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let run = format!("{driver}-{run}");
    let request = |name: &str, sku: &str, quantity| OrderRequest {
        idempotency_key: format!("run-{run}-{name}"),
        sku: sku.to_owned(),
        quantity,
    };

    let first = request("first", "mug", 2);
    let placed = store.place_order(&first).await?;
    let retried = store.place_order(&first).await?;
    check(retried == placed, "the retry got the first order")?;
    println!(
        "order then retry:          {placed:?}, retry got order {}",
        retried.id
    );

    let burst = request("burst", "mug", 1);
    let duplicates: Vec<_> = (0..8)
        .map(|_| {
            let (store, burst) = (Arc::clone(&store), burst.clone());
            tokio::spawn(async move { store.place_order(&burst).await })
        })
        .collect();
    let mut ids = Vec::new();
    for duplicate in duplicates {
        ids.push(duplicate.await??.id);
    }
    println!("8 concurrent duplicates:   order ids {ids:?}");
    check(
        ids.iter().all(|id| *id == ids[0]),
        "the duplicates got one order",
    )?;

    let big = request("big", "lamp", 3);
    match store.place_order(&big).await {
        Err(error @ OrderError::OutOfStock { .. }) => {
            println!("too many lamps:            {error}; nothing written")
        }
        other => return Err(format!("too many lamps: unexpected {other:?}").into()),
    }
    client
        .execute(
            "UPDATE idempotent_example.stock SET available = 5 WHERE sku = 'lamp'",
            &[],
        )
        .await?;
    let restocked = store.place_order(&big).await?;
    println!("same key after a restock:  {restocked:?}");

    let crashing = request("crash", "mug", 4);
    let crashed = store.place_order_and_crash(&crashing).await;
    check(
        matches!(crashed, Err(OrderError::Crashed)),
        "the crash failed the call",
    )?;
    let recovered = store.place_order(&crashing).await?;
    println!(
        "crash before the commit:   {}; the retry placed order {}",
        crashed.map_or_else(|error| error.to_string(), |order| format!("{order:?}")),
        recovered.id
    );

    let rows = client
        .query(
            "SELECT idempotency_key, count(*) FROM idempotent_example.orders
              WHERE idempotency_key LIKE $1 GROUP BY idempotency_key ORDER BY 1",
            &[&format!("run-{run}-%")],
        )
        .await?;
    let counts: Vec<String> = rows
        .iter()
        .map(|row| {
            let key: String = row.get(0);
            let count: i64 = row.get(1);
            format!("{}={count}", key.rsplit('-').next().unwrap_or("?"))
        })
        .collect();
    println!("order rows per key:        {}", counts.join(" "));
    check(
        counts == ["big=1", "burst=1", "crash=1", "first=1"],
        "one order row per key",
    )?;
    println!(
        "expired records purged:    {}",
        store.purge_expired().await?
    );
    Ok(())
}
