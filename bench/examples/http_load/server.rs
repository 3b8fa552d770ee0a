//! The measured server: one axum app, one route per setup, all on one
//! single-threaded runtime (the load generator and Redis need the machine's
//! other core).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_idempotent::{IdempotentLayer, IdempotentOptions};
use idempotent_bench::{ChargeRequest, Receipt};
use idempotent_core::MemoryBackend;
use idempotent_http::IdempotencyLayer;
use idempotent_redis::RedisBackend;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use ruts::store::moka::MokaStore;
use ruts::store::Ttl;
use ruts::{CookieOptions, Session, SessionLayer};
use tower_cookies::CookieManagerLayer;

/// The routes, in the order of their run counters.
pub const ROUTES: [&str; 5] = ["/plain", "/memory", "/redis", "/redis-get", "/peer"];
const PLAIN: usize = 0;
const MEMORY: usize = 1;
const REDIS: usize = 2;
const REDIS_GET: usize = 3;
const PEER: usize = 4;

/// The value the raw `GET` route reads: the same JSON the handler returns.
pub const GET_KEY: &str = "bench:http:get";

/// Bounds of the memory store, above what a full run writes.
const MEMORY_RECORDS: usize = 10_000_000;
const MEMORY_BYTES: usize = 4 << 30;

/// The session cookie of the peer's session layer.
pub const PEER_COOKIE: &str = "session";

/// How often each route's handler ran, so the runner can tell replays (the
/// handler did not run) from first runs.
#[derive(Default)]
struct Runs([AtomicU64; ROUTES.len()]);

#[derive(Clone)]
struct App {
    runs: Arc<Runs>,
    redis: ConnectionManager,
}

fn receipt(request: &ChargeRequest) -> Receipt {
    Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: request.amount,
    }
}

/// The handler of every setup: parse the charge, count the run, answer a
/// small JSON receipt.
async fn charge<const ROUTE: usize>(
    State(app): State<App>,
    Json(request): Json<ChargeRequest>,
) -> Json<Receipt> {
    app.runs.0[ROUTE].fetch_add(1, Ordering::Relaxed);
    Json(receipt(&request))
}

/// The reference for the layer on Redis: the same request, and one raw
/// `GET` round trip whose value is the answer (a 503 if Redis fails, which
/// the run's checks count).
async fn redis_get(
    State(mut app): State<App>,
    Json(_request): Json<ChargeRequest>,
) -> Result<([(HeaderName, &'static str); 1], Vec<u8>), StatusCode> {
    app.runs.0[REDIS_GET].fetch_add(1, Ordering::Relaxed);
    let value: Vec<u8> = app
        .redis
        .get(GET_KEY)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(([(CONTENT_TYPE, "application/json")], value))
}

/// Opens a session for the peer, whose layer only caches within one.
async fn login(session: Session<MokaStore>) -> Result<&'static str, StatusCode> {
    let ttl = Ttl::new(86_400).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    session
        .set("user", &1u64, ttl, None)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok("session opened")
}

async fn runs(State(app): State<App>) -> String {
    ROUTES
        .iter()
        .zip(&app.runs.0)
        .map(|(route, count)| format!("{route} {}\n", count.load(Ordering::Relaxed)))
        .collect()
}

/// Serves every setup on a loopback port, printed as `listening <addr>` on
/// stdout, until killed.
pub fn serve(redis_url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = redis::Client::open(redis_url).expect("a Redis URL");
        let redis = ConnectionManager::new(client)
            .await
            .expect("connect to Redis");
        let store = RedisBackend::connect(redis_url)
            .await
            .expect("connect the store");
        let app = App {
            runs: Arc::default(),
            redis,
        };

        // A run's first runs leave over a million records; the default
        // bounds (100 000 records, 128 MiB) would answer 503 past them.
        let memory = MemoryBackend::with_max_entries(MEMORY_RECORDS).with_max_bytes(MEMORY_BYTES);

        // The peer keeps its records in the session, so `/peer/login` and
        // `/peer` share one session store.
        let peer_store = Arc::new(MokaStore::builder().build());
        let peer_layer = IdempotentLayer::<MokaStore>::new(
            IdempotentOptions::default()
                .use_idempotency_key_header(Some("Idempotency-Key"), true)
                .expire_after(86_400),
        );
        let sessions = SessionLayer::new(peer_store)
            .with_cookie_options(CookieOptions::build().name(PEER_COOKIE));

        let router = Router::new()
            .route("/plain", post(charge::<PLAIN>))
            .route(
                "/memory",
                post(charge::<MEMORY>).layer(IdempotencyLayer::new(memory).shared_key_space()),
            )
            .route(
                "/redis",
                post(charge::<REDIS>).layer(IdempotencyLayer::new(store).shared_key_space()),
            )
            .route("/redis-get", post(redis_get))
            .route(
                "/peer",
                post(charge::<PEER>)
                    .layer::<_, Infallible>(peer_layer)
                    .layer::<_, Infallible>(sessions.clone())
                    .layer(CookieManagerLayer::new()),
            )
            .route(
                "/peer/login",
                post(login)
                    .layer::<_, Infallible>(sessions)
                    .layer(CookieManagerLayer::new()),
            )
            .route("/runs", get(runs))
            .with_state(app);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        println!("listening {}", listener.local_addr().expect("an address"));
        axum::serve(listener, router).await.expect("serve");
    });
}
