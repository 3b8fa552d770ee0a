//! The layer in a plain tower stack (no axum, no network): it composes with
//! `ServiceBuilder` and `service_fn`, and the runtime's release on
//! cancellation and on panic reaches through it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use idempotent_core::MemoryBackend;
use idempotent_http::key_space::Chosen;
use idempotent_http::{IdempotencyLayer, MaybeBuffered, IDEMPOTENT_REPLAYED};
use tower::{service_fn, ServiceBuilder, ServiceExt};

type Body = MaybeBuffered<Full<Bytes>>;

/// What each run of the handler does, by run number.
#[derive(Clone, Copy)]
enum Behaviour {
    Hang,
    Panic,
    Answer,
}

fn request(key: &str) -> Request<Full<Bytes>> {
    Request::post("/jobs")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(b"{\"job\":1}")))
        .unwrap()
}

/// A stack whose handler behaves as `script` says on its first runs, then
/// answers 201 with its run number.
fn stack(
    script: &'static [Behaviour],
    runs: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<MaybeBuffered<Full<Bytes>>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    ServiceBuilder::new()
        .layer(IdempotencyLayer::new(MemoryBackend::new()).shared_key_space())
        .service(service_fn(move |request: Request<Body>| {
            let runs = Arc::clone(&runs);
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, "{\"job\":1}", "the handler sees the buffered body");
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                match script.get(run - 1).copied().unwrap_or(Behaviour::Answer) {
                    Behaviour::Hang => std::future::pending::<()>().await,
                    Behaviour::Panic => panic!("the handler panicked on run {run}"),
                    Behaviour::Answer => {}
                }
                let mut response = Response::new(Full::new(Bytes::from(run.to_string())));
                *response.status_mut() = StatusCode::CREATED;
                Ok::<_, Infallible>(response)
            }
        }))
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_cancelled_request_releases_its_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = stack(&[Behaviour::Hang], Arc::clone(&runs));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        service.clone().oneshot(request("cancel-1")),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the first run hangs until it is dropped"
    );

    let retry = service.clone().oneshot(request("cancel-1")).await.unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CREATED,
        "not a 409: the key was released"
    );
    assert_eq!(text(retry).await, "2");
    let replay = service.oneshot(request("cancel-1")).await.unwrap();
    assert_eq!(replay.headers()[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_handler_releases_its_key() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = stack(&[Behaviour::Panic], Arc::clone(&runs));
    let panicked = tokio::spawn(service.clone().oneshot(request("panic-1"))).await;
    assert!(panicked.unwrap_err().is_panic());

    let retry = service.oneshot(request("panic-1")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(text(retry).await, "2");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// Bug 3 of issue 11, at the edge: a layer whose lease or ttl no store can
/// honour refuses keyed requests before anything is claimed, instead of
/// running the handler unprotected (a zero lease) or failing after it ran
/// (a huge ttl).
#[tokio::test]
async fn invalid_durations_refuse_the_request_before_the_handler_runs() {
    let settings: [fn(IdempotencyLayer<Chosen>) -> IdempotencyLayer<Chosen>; 4] = [
        |layer| layer.lease(Duration::ZERO),
        |layer| layer.ttl(Duration::MAX),
        |layer| layer.wait(Duration::ZERO),
        |layer| layer.lease(Duration::from_secs(400 * 24 * 3600)),
    ];
    for setting in settings {
        let store = Arc::new(MemoryBackend::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let service = ServiceBuilder::new()
            .layer(setting(
                IdempotencyLayer::new(Arc::clone(&store)).shared_key_space(),
            ))
            .service(service_fn(move |_: Request<Body>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
            }));
        let response = service.oneshot(request("k")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("layer-misconfigured"), "{body}");
        assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler did not run");
        assert!(store.is_empty(), "nothing was claimed");
    }
}
