//! A webhook receiver that credits a balance once per event, however often the
//! sender retries.
//!
//! Run with `cargo run --example webhook_server` (the embedded default store),
//! or with `REDIS_URL=redis://127.0.0.1:6379` to keep the records in Redis.
//!
//! Two senders show the two tools:
//!
//! - "acme" sends the event id in an `Idempotency-Key` header, so its route is
//!   behind `IdempotencyLayer`: whole responses are stored and replayed, marked
//!   `Idempotent-Replayed: true`, keys are scoped per sender, and misuse gets
//!   RFC 9457 problems (400, 409, 422, 413, 503).
//! - "globex" puts the event id in the JSON body and sends no header, so its
//!   handler carries `#[idempotent(key = event.event_id)]` directly.
//!
//! The server and a client that retries deliveries the way real senders do
//! (sequentially, concurrently, once with an altered body) run in this one
//! process; it prints what every delivery got back and exits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Json, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use idempotency::http::key_space::Chosen;
use idempotency::http::IdempotencyLayer;
use idempotency::idempotent;
use serde::{Deserialize, Serialize};

/// The account being credited, and how many credits really happened.
#[derive(Default)]
struct Ledger {
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    balance_cents: u64,
    credits: u32,
}

impl Ledger {
    /// The side effect that must happen once per event. Slow like a database
    /// transaction, so concurrent duplicates really overlap with it.
    async fn credit(&self, event_id: &str, amount_cents: u64) -> Credit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut state = self.state.lock().expect("ledger lock");
        state.balance_cents += amount_cents;
        state.credits += 1;
        Credit {
            event_id: event_id.to_owned(),
            credited_cents: amount_cents,
            balance_cents: state.balance_cents,
        }
    }

    fn totals(&self) -> (u64, u32) {
        let state = self.state.lock().expect("ledger lock");
        (state.balance_cents, state.credits)
    }
}

/// A payment event, as both senders deliver it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PaymentEvent {
    event_id: String,
    amount_cents: u64,
}

/// What the receiver answers: the credit it made for the event.
#[derive(Debug, Serialize, Deserialize)]
struct Credit {
    event_id: String,
    credited_cents: u64,
    balance_cents: u64,
}

impl IntoResponse for Credit {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

// ---- acme: the key arrives in the `Idempotency-Key` header ----------------

/// A plain handler: the layer in front of it does the deduplication.
async fn acme_webhook(
    State(ledger): State<Arc<Ledger>>,
    Json(event): Json<PaymentEvent>,
) -> Credit {
    ledger.credit(&event.event_id, event.amount_cents).await
}

fn acme_layer() -> IdempotencyLayer<Chosen> {
    IdempotencyLayer::with_default_backend()
        .scope("webhooks::acme")
        .required(true)
        // Duplicates arriving while the first delivery runs wait for its
        // response instead of getting a 409.
        .wait(Duration::from_secs(5))
        // Keys are per sender. A real receiver would use the sender its
        // signature check established; this one trusts a header.
        .client_id(|request| {
            let sender = request.headers.get("x-webhook-sender")?;
            Some(sender.to_str().ok()?.to_owned())
        })
}

// ---- globex: the key is the event id inside the body -----------------------

/// `#[idempotent]` hashes the handler's arguments, so the extracted event must
/// be `Serialize`: this newtype extracts it from the JSON body.
#[derive(Serialize)]
struct GlobexEvent(PaymentEvent);

impl<S: Send + Sync> FromRequest<S> for GlobexEvent {
    type Rejection = <Json<PaymentEvent> as FromRequest<S>>::Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(event) = Json::<PaymentEvent>::from_request(request, state).await?;
        Ok(GlobexEvent(event))
    }
}

#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error(transparent)]
    Idempotency(#[from] idempotency::Error),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let WebhookError::Idempotency(error) = self;
        let status = match error {
            idempotency::Error::InProgress => StatusCode::CONFLICT,
            idempotency::Error::PayloadMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            idempotency::Error::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // The same RFC 9457 shape as the layer's answers, with the generic
        // `about:blank` type whose title is the status' reason phrase.
        let problem = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason(),
            "status": status.as_u16(),
            "detail": error.to_string(),
        });
        let content_type = [("content-type", "application/problem+json")];
        (status, content_type, problem.to_string()).into_response()
    }
}

/// Runs once per event id; a redelivery gets the stored `Credit` back.
#[idempotent(key = event.0.event_id, scope = "webhooks::globex", wait = "5s", skip(ledger))]
async fn globex_webhook(
    ledger: State<Arc<Ledger>>,
    event: GlobexEvent,
) -> Result<Credit, WebhookError> {
    let GlobexEvent(event) = event;
    Ok(ledger.credit(&event.event_id, event.amount_cents).await)
}

// ---- the sender's side ------------------------------------------------------

struct Sender {
    http: reqwest::Client,
    base: String,
    deliveries: AtomicU32,
}

impl Sender {
    /// Delivers `event` to acme's route (key in the header, unless `None`)
    /// and describes the answer.
    async fn acme(&self, event: &PaymentEvent, key: Option<&str>) -> String {
        let mut request = self
            .http
            .post(format!("{}/webhooks/acme", self.base))
            .header("x-webhook-sender", "acme")
            .json(event);
        if let Some(key) = key {
            request = request.header("idempotency-key", format!("\"{key}\""));
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        describe(request.send().await).await
    }

    /// Delivers `event` to globex's route: the key is inside the body.
    async fn globex(&self, event: &PaymentEvent) -> String {
        let request = self
            .http
            .post(format!("{}/webhooks/globex", self.base))
            .json(event);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        describe(request.send().await).await
    }
}

async fn describe(sent: reqwest::Result<reqwest::Response>) -> String {
    let response = match sent {
        Ok(response) => response,
        Err(error) => return format!("request failed: {error}"),
    };
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    let problem = response
        .headers()
        .get("content-type")
        .is_some_and(|value| value == "application/problem+json");
    let body = response.text().await.unwrap_or_default();
    if problem {
        let title = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|problem| problem["title"].as_str().map(str::to_owned))
            .unwrap_or(body);
        format!("{status} problem: {title}")
    } else if replayed {
        format!("{status} replayed  {body}")
    } else {
        format!("{status}           {body}")
    }
}

fn event(event_id: &str, amount_cents: u64) -> PaymentEvent {
    PaymentEvent {
        event_id: event_id.to_owned(),
        amount_cents,
    }
}

/// Chooses the store: Redis when `REDIS_URL` is set, else the embedded
/// default. The layer and the attribute both use the process default.
async fn choose_store() -> Result<String, Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        return Ok("the embedded default store (in memory)".to_owned());
    };
    // A key prefix of its own per run, so a second run on the same Redis
    // starts from no history instead of replaying the first run's credits.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let store = idempotency::redis::RedisBackend::connect(&url)
        .await?
        .with_key_prefix(format!("webhook-example:{run}:"));
    idempotency::set_default_backend(store)?;
    Ok(format!("Redis at {url}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store first: the layer and the attribute take the process default,
    // which is fixed once the first of them uses it.
    let store = choose_store().await?;
    let ledger = Arc::new(Ledger::default());
    let app = Router::new()
        .route("/webhooks/acme", post(acme_webhook).layer(acme_layer()))
        .route("/webhooks/globex", post(globex_webhook))
        .with_state(Arc::clone(&ledger));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("webhook receiver on {base}, records in {store}");

    let sender = Arc::new(Sender {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        base,
        deliveries: AtomicU32::new(0),
    });

    println!("\n-- acme: evt_1001 (+500) delivered 3 times in a row (Idempotency-Key header)");
    let first = event("evt_1001", 500);
    for delivery in 1..=3 {
        let answer = sender.acme(&first, Some("evt_1001")).await;
        println!("delivery {delivery}  -> {answer}");
    }

    println!("\n-- acme: evt_1002 (+1250) delivered 6 times at once");
    let second = event("evt_1002", 1250);
    let deliveries: Vec<_> = (1..=6)
        .map(|delivery| {
            let (sender, second) = (Arc::clone(&sender), second.clone());
            tokio::spawn(async move { (delivery, sender.acme(&second, Some("evt_1002")).await) })
        })
        .collect();
    for delivery in deliveries {
        let (delivery, answer) = delivery.await?;
        println!("delivery {delivery}  -> {answer}");
    }

    println!("\n-- acme: evt_1001 again, its amount altered to 99999");
    let altered = event("evt_1001", 99_999);
    println!(
        "delivery 4  -> {}",
        sender.acme(&altered, Some("evt_1001")).await
    );

    println!("\n-- acme: a delivery without the header");
    println!(
        "delivery    -> {}",
        sender.acme(&event("evt_1003", 7), None).await
    );

    println!("\n-- globex: evt_g1 (+1000) delivered twice, then 4 times at once");
    println!(
        "   (key in the body, #[idempotent] handler: no replay marker, the same credit comes back)"
    );
    let third = event("evt_g1", 1000);
    for delivery in 1..=2 {
        println!("delivery {delivery}  -> {}", sender.globex(&third).await);
    }
    let deliveries: Vec<_> = (3..=6)
        .map(|delivery| {
            let (sender, third) = (Arc::clone(&sender), third.clone());
            tokio::spawn(async move { (delivery, sender.globex(&third).await) })
        })
        .collect();
    for delivery in deliveries {
        let (delivery, answer) = delivery.await?;
        println!("delivery {delivery}  -> {answer}");
    }
    println!("\n-- globex: evt_g1 again, its amount altered to 1");
    println!(
        "delivery 7  -> {}",
        sender.globex(&event("evt_g1", 1)).await
    );

    let _ = stop.send(());
    server.await??;

    let (balance, credits) = ledger.totals();
    let deliveries = sender.deliveries.load(Ordering::Relaxed);
    println!(
        "\nbalance: {balance} cents = 500 + 1250 + 1000; the ledger was credited {credits} \
         times for 3 events and {deliveries} deliveries"
    );
    assert_eq!(
        (balance, credits),
        (2750, 3),
        "each event moved the balance once"
    );
    Ok(())
}
