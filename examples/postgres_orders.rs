//! Orders placed exactly once: the order's rows and its idempotency record
//! commit in one Postgres transaction.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run --example postgres_orders
//! ```
//!
//! Without `DATABASE_URL` it starts a private PostgreSQL server (`initdb`
//! and `postgres` from the `postgresql` package) in a temporary directory.
//!
//! A client retries an order after a timeout, fires a burst of concurrent
//! duplicates, orders more than is in stock (the failed attempt leaves
//! nothing behind, and the same key succeeds after a restock), and crashes
//! halfway through an order (its rows are rolled back, the retry writes them
//! once). Each order is one row, however often it was sent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency::postgres::tokio_postgres::{self, Transaction};
use idempotency::postgres::PostgresBackend;
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
    #[error("only {available} of {sku} in stock")]
    OutOfStock { sku: String, available: i32 },
    #[error("the process crashed")]
    Crashed,
}

/// Takes the stock and writes the order, in the transaction that also
/// stores the idempotency record.
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

async fn place_order(store: &PostgresBackend, req: &OrderRequest) -> Result<Order, OrderError> {
    store
        .transactional()
        .scope("examples::postgres_orders::place_order")
        .wait(Duration::from_secs(10))
        .run(&req.idempotency_key, req, async |tx| {
            write_order(tx, req).await
        })
        .await
}

/// Like `place_order`, but the process "dies" after writing the order and
/// before the commit (an error here; a panic or a kill leaves the same:
/// nothing).
async fn place_order_and_crash(
    store: &PostgresBackend,
    req: &OrderRequest,
) -> Result<Order, OrderError> {
    store
        .transactional()
        .scope("examples::postgres_orders::place_order")
        .run(&req.idempotency_key, req, async |tx| {
            write_order(tx, req).await?;
            Err(OrderError::Crashed)
        })
        .await
}

async fn setup(url: &str) -> Result<PostgresBackend, Box<dyn std::error::Error>> {
    let store = PostgresBackend::connect(url).await?.with_schema(SCHEMA);
    store.migrate().await?;
    let client = store.pool().get().await?;
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
        .await?;
    Ok(store)
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
    let store = Arc::new(setup(&url).await?);
    // Fresh keys per run, so every run tells the whole story.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let request = |name: &str, sku: &str, quantity| OrderRequest {
        idempotency_key: format!("run-{run}-{name}"),
        sku: sku.to_owned(),
        quantity,
    };

    let first = request("first", "mug", 2);
    let placed = place_order(&store, &first).await?;
    let retried = place_order(&store, &first).await?;
    println!(
        "order then retry:          {placed:?}, retry got order {}",
        retried.id
    );

    let burst = request("burst", "mug", 1);
    let duplicates: Vec<_> = (0..8)
        .map(|_| {
            let (store, burst) = (Arc::clone(&store), burst.clone());
            tokio::spawn(async move { place_order(&store, &burst).await })
        })
        .collect();
    let mut ids = Vec::new();
    for duplicate in duplicates {
        ids.push(duplicate.await??.id);
    }
    println!("8 concurrent duplicates:   order ids {ids:?}");

    let big = request("big", "lamp", 3);
    match place_order(&store, &big).await {
        Err(error @ OrderError::OutOfStock { .. }) => {
            println!("too many lamps:            {error}; nothing written")
        }
        other => println!("too many lamps:            unexpected {other:?}"),
    }
    let client = store.pool().get().await?;
    client
        .execute(
            "UPDATE idempotent_example.stock SET available = 5 WHERE sku = 'lamp'",
            &[],
        )
        .await?;
    let restocked = place_order(&store, &big).await?;
    println!("same key after a restock:  {restocked:?}");

    let crashing = request("crash", "mug", 4);
    let crashed = place_order_and_crash(&store, &crashing).await;
    let recovered = place_order(&store, &crashing).await?;
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
    println!(
        "expired records purged:    {}",
        store.purge_expired(1000).await?
    );
    Ok(())
}
