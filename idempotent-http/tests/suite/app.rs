//! The application under test: an axum server on a free loopback port, with
//! handlers that count how often they really ran, behind the layer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_TYPE, LOCATION, SET_COOKIE,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use idempotent_core::Backend;
use idempotent_http::key_space::Chosen;
use idempotent_http::IdempotencyLayer;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower_http::compression::CompressionLayer;

/// The limits every test server runs with, small enough to test cheaply.
pub const MAX_BODY_BYTES: usize = 1024;
pub const MAX_KEY_LEN: usize = 64;
/// The request header the test's client extractor reads as the account; a
/// real application would read what its authentication layer established.
pub const ACCOUNT: &str = "x-account";

/// A handler held until the test lets it finish.
#[derive(Default)]
pub struct Gate {
    entered: Notify,
    release: Notify,
}

impl Gate {
    /// Waits until a held handler has started.
    pub async fn entered(&self) {
        self.entered.notified().await;
    }

    /// Lets one held handler finish.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

#[derive(Default)]
struct Shared {
    runs: Mutex<HashMap<&'static str, usize>>,
    gate: Gate,
    /// Holds `/events` between its first and its last event.
    stream_gate: Gate,
}

impl Shared {
    fn run(&self, handler: &'static str) -> usize {
        let mut runs = self.runs.lock().unwrap();
        let count = runs.entry(handler).or_default();
        *count += 1;
        *count
    }
}

/// A running test server; stopped when dropped.
pub struct TestServer {
    pub base: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves the test routes behind the base layer on `backend`, adjusted by
    /// `configure`.
    pub async fn start(
        backend: Arc<dyn Backend>,
        configure: impl FnOnce(IdempotencyLayer<Chosen>) -> IdempotencyLayer<Chosen>,
    ) -> TestServer {
        Self::start_choosing(backend, |layer| {
            configure(layer.client_id(|request| {
                let account = request.headers.get(ACCOUNT)?;
                Some(account.to_str().ok()?.to_owned())
            }))
        })
        .await
    }

    /// Like [`start`](Self::start), where `configure` chooses the key space.
    pub async fn start_choosing(
        backend: Arc<dyn Backend>,
        configure: impl FnOnce(IdempotencyLayer) -> IdempotencyLayer<Chosen>,
    ) -> TestServer {
        let layer = IdempotencyLayer::from_arc(backend)
            .max_body_bytes(MAX_BODY_BYTES)
            .max_key_len(MAX_KEY_LEN);
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/payments", any(payments))
            .route("/held", post(held))
            .route("/flaky", post(flaky))
            .route("/declined", post(declined))
            .route("/throttled", post(throttled))
            // Compressed inside the idempotency layer, so what is stored is
            // the gzip body, whose encoding the replay must carry.
            .route("/report", post(report).layer(CompressionLayer::new()))
            .route("/partial", post(partial))
            .route("/events", post(events))
            .route("/download/{mode}/{bytes}", post(download))
            .route("/slow-body", post(slow_body))
            .route("/failing-body", post(failing_body))
            .layer(configure(layer))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        TestServer { base, shared, task }
    }

    /// How often `handler` really ran.
    pub fn runs(&self, handler: &str) -> usize {
        let runs = self.shared.runs.lock().unwrap();
        runs.get(handler).copied().unwrap_or(0)
    }

    /// The gate of the `/held` handler.
    pub fn gate(&self) -> &Gate {
        &self.shared.gate
    }

    /// The gate `/events` waits at after its first event.
    pub fn stream_gate(&self) -> &Gate {
        &self.shared.stream_gate
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 201 with a JSON receipt, a `Location`, and two headers that must reach the
/// first caller only (a request id and a cookie).
async fn payments(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let run = shared.run("payments");
    let receipt = json!({ "payment": run, "request": String::from_utf8_lossy(&body) });
    let headers = [
        (LOCATION, format!("/payments/{run}")),
        (SET_COOKIE, format!("session=s{run}")),
    ];
    (
        StatusCode::CREATED,
        headers,
        [("x-request-id", format!("req-{run}"))],
        Json(receipt),
    )
        .into_response()
}

/// Like `payments`, but holds until the test releases it.
async fn held(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("held");
    shared.gate.entered.notify_one();
    shared.gate.release.notified().await;
    (StatusCode::CREATED, Json(json!({ "held": run }))).into_response()
}

/// Fails with a 500 on its first run, as a handler whose database was
/// briefly down, and succeeds afterwards.
async fn flaky(State(shared): State<Arc<Shared>>) -> Response {
    match shared.run("flaky") {
        1 => (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable").into_response(),
        run => (StatusCode::CREATED, Json(json!({ "flaky": run }))).into_response(),
    }
}

/// A business refusal: a 4xx that is the operation's answer.
async fn declined(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("declined");
    let refusal = json!({ "error": "card declined", "run": run });
    (StatusCode::PAYMENT_REQUIRED, Json(refusal)).into_response()
}

/// A rate limit: a 4xx that asks the client to retry.
async fn throttled(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("throttled");
    (StatusCode::TOO_MANY_REQUESTS, format!("slow down ({run})")).into_response()
}

/// A JSON report, long enough to be compressed, offered as a download that
/// caches may keep privately; per-response headers that must not be replayed.
async fn report(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("report");
    let rows: Vec<_> = (0..200)
        .map(|row| json!({ "row": row, "run": run }))
        .collect();
    let headers = [
        (CACHE_CONTROL, "private, max-age=60".to_owned()),
        (
            CONTENT_DISPOSITION,
            "attachment; filename=\"report.json\"".to_owned(),
        ),
        (SET_COOKIE, format!("session=r{run}")),
    ];
    (
        StatusCode::OK,
        headers,
        [("x-request-id", format!("req-{run}"))],
        Json(rows),
    )
        .into_response()
}

/// The first bytes of a resource, as a range response.
async fn partial(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("partial");
    let headers = [(CONTENT_RANGE, "bytes 0-9/100")];
    (StatusCode::PARTIAL_CONTENT, headers, format!("{run:0>10}")).into_response()
}

/// A server-sent event stream: one event, then, once the test opens the
/// stream gate, a last one. A layer that collects the body before sending
/// anything never lets the test see the first.
async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("events");
    let (body, sender) = ChannelBody::new();
    tokio::spawn(async move {
        let _ = sender
            .send(Bytes::from(format!("data: first of run {run}\n\n")))
            .await;
        shared.stream_gate.entered.notify_one();
        shared.stream_gate.release.notified().await;
        let _ = sender.send(Bytes::from_static(b"data: last\n\n")).await;
    });
    (
        [(CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::new(body),
    )
        .into_response()
}

/// `bytes` bytes of `download_byte`s: as 16 KiB chunks without a
/// `Content-Length` (`mode` `chunked`), or in one piece with it (`sized`).
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((mode, bytes)): Path<(String, usize)>,
) -> Response {
    shared.run("download");
    let content: Vec<u8> = (0..bytes).map(download_byte).collect();
    let headers = [(CONTENT_TYPE, "application/octet-stream")];
    if mode == "sized" {
        return (headers, content).into_response();
    }
    let (body, sender) = ChannelBody::new();
    tokio::spawn(async move {
        for chunk in content.chunks(16 * 1024) {
            if sender.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    (headers, axum::body::Body::new(body)).into_response()
}

/// A payment whose receipt is produced after the charge, lazily, as a
/// cursor or a template would: 201, then three chunks 200 ms apart, each
/// made only when the body is polled.
async fn slow_body(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("slow-body");
    let body = SlowBody {
        run,
        sent: 0,
        pause: Box::pin(tokio::time::sleep(SLOW_BODY_PAUSE)),
    };
    (StatusCode::CREATED, axum::body::Body::new(body)).into_response()
}

/// A handler that charged, answered 201, and whose body then fails midway
/// (a cursor that broke).
async fn failing_body(State(shared): State<Arc<Shared>>) -> Response {
    let run = shared.run("failing-body");
    let (sender, body) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let _ = sender
            .send(Ok(Bytes::from(format!("receipt {run}, "))))
            .await;
        let broken = std::io::Error::other("the cursor broke");
        let _ = sender.send(Err(broken)).await;
    });
    (
        StatusCode::CREATED,
        axum::body::Body::new(FailingBody(body)),
    )
        .into_response()
}

struct FailingBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}

/// The pause before each of `/slow-body`'s chunks.
pub const SLOW_BODY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
const SLOW_BODY_CHUNKS: u8 = 3;

struct SlowBody {
    run: usize,
    sent: u8,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.sent == SLOW_BODY_CHUNKS {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.pause.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + SLOW_BODY_PAUSE;
        self.pause.as_mut().reset(next);
        let chunk = format!("chunk {} of run {}\n", self.sent, self.run);
        self.sent += 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk)))))
    }
}

/// The byte at `index` of every download, so a reordered or truncated body
/// shows.
pub fn download_byte(index: usize) -> u8 {
    b'a' + (index % 26) as u8
}

/// A response body fed by a task, chunk by chunk, of unknown length.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl ChannelBody {
    fn new() -> (Self, tokio::sync::mpsc::Sender<Bytes>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        (Self(receiver), sender)
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}
