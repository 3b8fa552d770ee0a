//! An axum order endpoint on the sqlx pool the service already has: the
//! order's rows and its idempotency record commit in one transaction.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo run --example axum_sqlx_orders
//! ```
//!
//! Without `DATABASE_URL` it starts a private PostgreSQL server (`initdb`
//! and `postgres` from the `postgresql` package) in a temporary directory.
//!
//! `POST /orders` takes the client's `Idempotency-Key` header and runs the
//! handler's work in `SqlxBackend`'s transactional mode: the body gets the
//! transaction's `&mut PgConnection` and writes the order on it; the record
//! is completed in the same transaction. So a client that retries (after a
//! timeout, in a burst, after the server failed halfway) gets the one order,
//! and an order that failed leaves nothing behind.
//!
//! A client in the same process sends a first order and its retry, eight
//! concurrent duplicates, the same key with another body, and an order too
//! large for the stock, then checks the table: one row per key. It exits
//! with an error if anything differs.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use idempotency::postgres::sqlx::{self, PgConnection, PgPool};
use idempotency::postgres::SqlxBackend;
use idempotent_test_support::postgres::PostgresServer;
use serde::{Deserialize, Serialize};

const SCHEMA: &str = "axum_sqlx_orders";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NewOrder {
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
    Database(#[from] sqlx::Error),
    #[error("only {available} of {sku} in stock")]
    OutOfStock { sku: String, available: i32 },
}

impl IntoResponse for OrderError {
    fn into_response(self) -> Response {
        use idempotency::Error as E;
        let status = match &self {
            OrderError::Idempotency(E::MissingKey) => StatusCode::BAD_REQUEST,
            OrderError::Idempotency(E::InProgress) => StatusCode::CONFLICT,
            OrderError::Idempotency(E::PayloadMismatch) => StatusCode::UNPROCESSABLE_ENTITY,
            OrderError::OutOfStock { .. } => StatusCode::CONFLICT,
            // Unknown whether it committed: the client retries with the same
            // key and gets the order or a fresh attempt, never half of one.
            OrderError::Idempotency(E::CommitUnknown(_) | E::Backend(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

#[derive(Clone)]
struct App {
    store: SqlxBackend,
}

/// Takes the stock and writes the order on the transaction's connection.
async fn write_order(
    tx: &mut PgConnection,
    order: &NewOrder,
    key: &str,
) -> Result<Order, OrderError> {
    let taken = sqlx::query(
        "UPDATE axum_sqlx_orders.stock SET available = available - $2
          WHERE sku = $1 AND available >= $2",
    )
    .bind(&order.sku)
    .bind(order.quantity)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 0 {
        let available =
            sqlx::query_scalar("SELECT available FROM axum_sqlx_orders.stock WHERE sku = $1")
                .bind(&order.sku)
                .fetch_one(&mut *tx)
                .await?;
        return Err(OrderError::OutOfStock {
            sku: order.sku.clone(),
            available,
        });
    }
    let id = sqlx::query_scalar(
        "INSERT INTO axum_sqlx_orders.orders (idempotency_key, sku, quantity)
         VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(key)
    .bind(&order.sku)
    .bind(order.quantity)
    .fetch_one(&mut *tx)
    .await?;
    // Slow like a real order, so the burst's duplicates overlap with it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(Order {
        id,
        sku: order.sku.clone(),
        quantity: order.quantity,
    })
}

async fn create_order(
    State(app): State<App>,
    headers: HeaderMap,
    Json(order): Json<NewOrder>,
) -> Result<(StatusCode, Json<Order>), OrderError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let placed = app
        .store
        .transactional()
        .scope("examples::axum_sqlx_orders::create_order")
        .require_key()
        .wait(Duration::from_secs(10))
        .run(&key, &order, async |tx| {
            write_order(tx, &order, key.as_deref().unwrap_or_default()).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

async fn setup(pool: &PgPool) -> Result<SqlxBackend, Box<dyn std::error::Error>> {
    let store = SqlxBackend::new(pool.clone()).with_schema(SCHEMA);
    store.migrate().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS axum_sqlx_orders.orders (
             id bigserial PRIMARY KEY, idempotency_key text NOT NULL,
             sku text NOT NULL, quantity int NOT NULL);
         CREATE TABLE IF NOT EXISTS axum_sqlx_orders.stock (
             sku text PRIMARY KEY, available int NOT NULL);
         INSERT INTO axum_sqlx_orders.stock VALUES ('mug', 100), ('lamp', 1)
         ON CONFLICT (sku) DO UPDATE SET available = excluded.available;",
    )
    .execute(pool)
    .await?;
    Ok(store)
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
    // The service's own pool: the store and the handlers share it.
    let pool = PgPool::connect(&url).await?;
    let store = setup(&pool).await?;
    let app = Router::new()
        .route("/orders", post(create_order))
        .with_state(App { store });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let endpoint = format!("http://{address}/orders");
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let send = {
        let (client, endpoint) = (client.clone(), endpoint.clone());
        move |key: Option<String>, sku: &str, quantity: i32| {
            let mut request = client.post(&endpoint).json(&NewOrder {
                sku: sku.to_owned(),
                quantity,
            });
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            async move {
                let response = request.send().await?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
        }
    };
    let key = |name: &str| key_of(run, name);

    let first = send(key("first"), "mug", 2).await?;
    let retry = send(key("first"), "mug", 2).await?;
    println!(
        "order then retry:        {} {} / {} {}",
        first.0, first.1, retry.0, retry.1
    );
    check(
        first.0 == 201 && retry == first,
        "the retry got the same order",
    )?;

    let send = Arc::new(send);
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let send = Arc::clone(&send);
            tokio::spawn(async move { send(key_of(run, "burst"), "mug", 1).await })
        })
        .collect();
    let mut answers = Vec::new();
    for duplicate in burst {
        answers.push(duplicate.await??);
    }
    println!(
        "8 concurrent duplicates: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    check(
        answers
            .iter()
            .all(|answer| *answer == answers[0] && answer.0 == 201),
        "every duplicate got the one order",
    )?;

    let altered = send(key("first"), "lamp", 1).await?;
    println!("same key, other body:    {} {}", altered.0, altered.1);
    check(altered.0 == 422, "another body under a used key is refused")?;

    let too_many = send(key("big"), "lamp", 3).await?;
    println!("too many lamps:          {} {}", too_many.0, too_many.1);
    check(too_many.0 == 409, "an order over the stock is refused")?;

    let no_key = send(None, "mug", 1).await?;
    println!("no Idempotency-Key:      {} {}", no_key.0, no_key.1);
    check(no_key.0 == 400, "a request without a key is refused")?;

    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM axum_sqlx_orders.orders
          WHERE idempotency_key LIKE $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(format!("run-{run}-%"))
    .fetch_all(&pool)
    .await?;
    let counts: Vec<String> = rows
        .iter()
        .map(|(key, count)| format!("{}={count}", key.rsplit('-').next().unwrap_or("?")))
        .collect();
    println!("order rows per key:      {}", counts.join(" "));
    check(
        counts == ["burst=1", "first=1"],
        "one order row per key, none for the refused",
    )?;
    Ok(())
}

/// The run's key named `name`: fresh keys per run, so every run tells the
/// whole story.
fn key_of(run: u128, name: &str) -> Option<String> {
    Some(format!("run-{run}-{name}"))
}
