//! `#[idempotent]` directly on an axum handler, over real HTTP: the handler's
//! arguments (bar the skipped state) and its response are serializable, so
//! the attribute needs no layer. The key here is the order id in the body.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequest, Json, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use idempotent_core::idempotent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    order_id: String,
    amount_cents: u64,
}

/// The request body as a `Serialize` extractor, so the attribute can hash it.
#[derive(Serialize)]
struct NewOrder(Order);

impl<S: Send + Sync> FromRequest<S> for NewOrder {
    type Rejection = <Json<Order> as FromRequest<S>>::Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(order) = Json::<Order>::from_request(request, state).await?;
        Ok(NewOrder(order))
    }
}

#[derive(Serialize, Deserialize)]
struct Placed {
    order_id: String,
    run: usize,
}

impl IntoResponse for Placed {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self)).into_response()
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ApiError(#[from] idempotent_core::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            idempotent_core::Error::InProgress => StatusCode::CONFLICT,
            idempotent_core::Error::PayloadMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            idempotent_core::Error::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.0.to_string()).into_response()
    }
}

#[idempotent(key = order.0.order_id, wait = "10s", skip(runs))]
async fn place(runs: State<Arc<AtomicUsize>>, order: NewOrder) -> Result<Placed, ApiError> {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    Ok(Placed {
        order_id: order.0.order_id,
        run,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_axum_handler_runs_once_per_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/orders", post(place))
        .with_state(Arc::clone(&runs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let send = |amount: u64| {
        let order = Order {
            order_id: "o-1".into(),
            amount_cents: amount,
        };
        let request = client.post(&url).json(&order);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let first = send(100).await;
    assert_eq!(first.0, 201);
    // Ten concurrent retries, then one more: all get the one stored answer.
    let retries: Vec<_> = (0..10).map(|_| tokio::spawn(send(100))).collect();
    for retry in retries {
        assert_eq!(retry.await.unwrap(), first);
    }
    assert_eq!(send(100).await, first);
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let (status, _) = send(5).await;
    assert_eq!(status, 422, "the order id with another amount is refused");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.abort();
}
