//! A payment handler made safe to retry, on the embedded default store.
//!
//! Run with `cargo run --example quickstart`. A client retries the way real
//! clients do: sequential retries after a timeout, then a burst of concurrent
//! duplicates, then the same key reused for another amount. The card is
//! charged once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotency::idempotent;
use serde::{Deserialize, Serialize};

/// The payment provider: counts real charges, and is slow like one.
#[derive(Default)]
struct Gateway {
    charges: AtomicU32,
}

impl Gateway {
    async fn charge(&self, amount_cents: u64) -> Result<Receipt, ChargeError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let number = self.charges.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Receipt {
            charge_id: format!("ch_{number:04}"),
            amount_cents,
        })
    }
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
    #[allow(dead_code)]
    #[error("card declined")]
    Declined,
}

/// Runs once per idempotency key; retries get the stored receipt. Duplicates
/// arriving while the first call runs wait up to 5 s for its result.
#[idempotent(key = req.idempotency_key, ttl = "24h", wait = "5s", skip(gateway))]
async fn charge(gateway: &Gateway, req: ChargeRequest) -> Result<Receipt, ChargeError> {
    gateway.charge(req.amount_cents).await
}

fn show(caller: &str, outcome: &Result<Receipt, ChargeError>) {
    match outcome {
        Ok(receipt) => println!(
            "{caller:<28} -> ok: {} for {} cents",
            receipt.charge_id, receipt.amount_cents
        ),
        Err(error) => println!("{caller:<28} -> error: {error}"),
    }
}

#[tokio::main]
async fn main() {
    let gateway = Arc::new(Gateway::default());
    let order = ChargeRequest {
        idempotency_key: "order-1001".into(),
        amount_cents: 4_999,
    };

    println!("-- sequential retries (the client timed out and tried again)");
    for attempt in 1..=3 {
        let outcome = charge(&gateway, order.clone()).await;
        show(&format!("attempt {attempt}"), &outcome);
    }

    println!("-- a burst of 8 concurrent duplicates of a new order");
    let burst = ChargeRequest {
        idempotency_key: "order-1002".into(),
        amount_cents: 1_250,
    };
    let callers: Vec<_> = (1..=8)
        .map(|caller| {
            let gateway = Arc::clone(&gateway);
            let request = burst.clone();
            tokio::spawn(async move { (caller, charge(&gateway, request).await) })
        })
        .collect();
    for caller in callers {
        let (caller, outcome) = caller.await.expect("caller task");
        show(&format!("concurrent caller {caller}"), &outcome);
    }

    println!("-- the first key reused for another amount");
    let reused = ChargeRequest {
        amount_cents: 10,
        ..order
    };
    show("reused key, 10 cents", &charge(&gateway, reused).await);

    let charges = gateway.charges.load(Ordering::SeqCst);
    println!("-- the charge body ran {charges} times for 2 orders and 12 calls");
}
