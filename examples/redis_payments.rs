//! The quickstart's payment story on Redis, with several workers racing.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example redis_payments
//! ```
//!
//! Four workers, each with its own connection (as if on four machines), pull
//! the same stream of charge requests, duplicates included, the way a queue
//! redelivers them. Each order is charged once; every worker gets the same
//! receipt for it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotency::idempotent;
use idempotency::redis::RedisBackend;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Gateway {
    charges: AtomicU32,
}

#[derive(Clone, Serialize, Deserialize)]
struct ChargeRequest {
    idempotency_key: String,
    amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    charge_id: String,
    amount_cents: u64,
}

#[derive(Debug, thiserror::Error)]
enum ChargeError {
    #[error(transparent)]
    Idempotency(#[from] idempotency::Error),
}

#[idempotent(
    key = req.idempotency_key,
    ttl = "10m",
    wait = "10s",
    skip(store, gateway),
    backend = store,
    scope = "examples::redis_payments::charge"
)]
async fn charge(
    store: &RedisBackend,
    gateway: &Gateway,
    req: ChargeRequest,
) -> Result<Receipt, ChargeError> {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let number = gateway.charges.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Receipt {
        charge_id: format!("ch_{number:04}"),
        amount_cents: req.amount_cents,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A fresh set of order ids per run, so every run tells the whole story.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let orders: Vec<ChargeRequest> = (1..=5)
        .map(|order| ChargeRequest {
            idempotency_key: format!("run-{run}-order-{order}"),
            amount_cents: 1_000 * order,
        })
        .collect();
    let gateway = Arc::new(Gateway::default());

    println!("4 workers on {url}, each delivered all 5 orders twice");
    let mut workers = Vec::new();
    for worker in 1..=4 {
        let store = RedisBackend::connect(&url).await?;
        let (gateway, orders) = (Arc::clone(&gateway), orders.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for request in orders.iter().chain(&orders) {
                let outcome = charge(&store, &gateway, request.clone()).await;
                seen.push((request.idempotency_key.clone(), outcome));
            }
            (worker, seen)
        }));
    }
    for worker in workers {
        let (worker, seen) = worker.await?;
        let receipts: Vec<String> = seen
            .into_iter()
            .map(|(key, outcome)| {
                let order = key.rsplit('-').next().unwrap_or("?").to_owned();
                match outcome {
                    Ok(receipt) => format!("{order}:{}", receipt.charge_id),
                    Err(error) => format!("{order}:error({error})"),
                }
            })
            .collect();
        println!("worker {worker} got order:receipt {}", receipts.join(" "));
    }
    let charges = gateway.charges.load(Ordering::SeqCst);
    println!("the card was charged {charges} times for 5 orders and 40 deliveries");
    Ok(())
}
