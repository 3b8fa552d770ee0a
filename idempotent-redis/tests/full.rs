//! A Redis run as the docs ask, with `maxmemory-policy noeviction`, that is
//! full: it refuses writes with `OOM`. Found by a user's trial: a completion
//! refused that way was not retried (the body later ran again), and a replay
//! of a stored result was refused too, since the claim is a write.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{FencingToken, Fingerprint};
use idempotent_core::{Backend, BackendErrorKind, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisOptions, RedisServer};

const LEASE: Duration = Duration::from_secs(2);

fn full_server() -> RedisServer {
    RedisServer::start_with(RedisOptions {
        extra_args: ["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]
            .map(str::to_owned)
            .to_vec(),
        ..RedisOptions::default()
    })
}

/// Makes the server full: 1 MiB of other data, then `maxmemory` lowered
/// below it, so every write is refused until [`free`] raises it again (as
/// an operator freeing memory would). Filling until a write is refused is
/// not enough: the refused command's own buffer is what tips it over.
fn fill(server: &RedisServer) {
    let filler = vec![b'x'; 64 * 1024];
    for written in 0..16 {
        let () = server.query(
            redis::cmd("SET")
                .arg(format!("filler:{written}"))
                .arg(&filler),
        );
    }
    let () = server.query(
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("512kb"),
    );
    let refused = server.try_query::<()>(redis::cmd("SET").arg("probe").arg("x"));
    assert!(
        refused.is_err_and(|error| error.code() == Some("OOM")),
        "the server is full"
    );
}

fn free(server: &RedisServer) {
    let () = server.query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("64mb"));
}

async fn charge(store: &RedisBackend, runs: &AtomicUsize) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("full::charge")
        .lease(LEASE)
        .run("order-1", &1999, || async {
            Ok(runs.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_refused_by_a_full_server_is_retried_until_memory_frees() {
    let server = Arc::new(full_server());
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let runs = AtomicUsize::new(0);
    let filled = AtomicUsize::new(0);
    let first: Result<usize, Error> = Idempotency::new(&store)
        .scope("full::charge")
        .lease(LEASE)
        .run("order-1", &1999, || async {
            // The body's side effect happened; then the server fills up,
            // and an operator frees memory 300 ms later, well within the lease.
            fill(&server);
            filled.fetch_add(1, Ordering::SeqCst);
            let server = server.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                tokio::task::spawn_blocking(move || free(&server))
                    .await
                    .unwrap();
            });
            Ok(runs.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .await;
    assert_eq!(first.unwrap(), 1);
    assert_eq!(filled.load(Ordering::SeqCst), 1);
    assert_eq!(
        charge(&store, &runs).await.unwrap(),
        1,
        "the retry replays the stored result"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_still_replays_stored_results_and_refuses_new_keys_as_full() {
    let server = full_server();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let runs = AtomicUsize::new(0);
    assert_eq!(charge(&store, &runs).await.unwrap(), 1);
    fill(&server);

    assert_eq!(
        charge(&store, &runs).await.unwrap(),
        1,
        "a stored result is replayed while the server is full"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let other_input = Idempotency::new(&store)
        .scope("full::charge")
        .lease(LEASE)
        .run("order-1", &5, || async { Ok(0usize) })
        .await;
    assert!(
        matches!(other_input, Err(Error::PayloadMismatch)),
        "{other_input:?}"
    );

    let fingerprint = Fingerprint::from_bytes([7; 32]);
    let refused = store
        .claim("full:new", &fingerprint, FencingToken::generate(), LEASE)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), BackendErrorKind::Capacity, "{refused}");
    assert!(refused.to_string().contains("full"), "{refused}");

    let new_key = charge_new(&store).await;
    assert!(matches!(new_key, Err(Error::Backend(_))), "{new_key:?}");
}

async fn charge_new(store: &RedisBackend) -> Result<usize, Error> {
    Idempotency::new(store)
        .scope("full::charge")
        .lease(LEASE)
        .run("order-2", &1999, || async { Ok(9usize) })
        .await
}

/// The same with a local cache, whose claim is a `MULTI`/`EXEC`: a record
/// another process stored (so not in this cache) still replays while full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_replays_through_a_store_with_a_local_cache() {
    let server = full_server();
    let writer = RedisBackend::connect(&server.url()).await.unwrap();
    let reader = RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_local_cache(100, Duration::from_secs(60));
    let runs = AtomicUsize::new(0);
    assert_eq!(charge(&writer, &runs).await.unwrap(), 1);
    fill(&server);
    assert_eq!(
        charge(&reader, &runs).await.unwrap(),
        1,
        "a stored result is replayed while the server is full"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
