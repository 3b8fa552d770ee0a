//! `RedisBackend::with_local_cache` on a private server: what it saves
//! (round trips counted by `INFO commandstats`) and what it must never do
//! (serve an expired record, a record of another scope, input or key
//! prefix, or a record that changed while the cache was being filled).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{Backend, Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const HOUR: Duration = Duration::from_secs(3600);

/// Counts body runs per test (each test has its own counter).
struct Runs(AtomicUsize);

impl Runs {
    const fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn call(
    store: &RedisBackend,
    runs: &Runs,
    scope: &'static str,
    key: &str,
    amount: u32,
    ttl: Duration,
) -> Result<String, Error> {
    Idempotency::new(store)
        .scope(scope)
        .ttl(ttl)
        .run(key, &amount, || async {
            let run = runs.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("{key}: {amount} cents, run {run}"))
        })
        .await
}

/// Commands the server ran since the last reset, by name.
fn commands(server: &RedisServer) -> Vec<(String, u64)> {
    server
        .command_counts()
        .into_iter()
        .filter(|(name, _)| name != "config|resetstat" && name != "info")
        .collect()
}

async fn cached_store(server: &RedisServer, max_age: Duration) -> RedisBackend {
    RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .with_local_cache(100, max_age)
}

#[tokio::test]
async fn repeated_replays_cost_no_round_trip() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    let first = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();

    server.reset_stats();
    let replay = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    assert_eq!(replay, first);
    assert_eq!(
        commands(&server),
        vec![
            ("exec".to_owned(), 1),
            ("multi".to_owned(), 1),
            ("pttl".to_owned(), 1),
            ("set".to_owned(), 1)
        ],
        "the first replay: SET NX GET and PTTL in one transaction"
    );

    server.reset_stats();
    for _ in 0..100 {
        let replay = call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap();
        assert_eq!(replay, first);
    }
    assert_eq!(commands(&server), vec![], "100 replays from the cache");
    assert_eq!(RUNS.count(), 1);

    // Clones share the cache.
    let clone = store.clone();
    server.reset_stats();
    call(&clone, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    assert_eq!(commands(&server), vec![]);
}

#[tokio::test]
async fn the_cache_is_off_by_default() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    for _ in 0..10 {
        call(&store, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap();
    }
    assert_eq!(commands(&server), vec![("set".to_owned(), 10)]);
}

#[tokio::test]
async fn an_expired_record_is_never_served() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    let ttl = Duration::from_millis(400);
    let first = call(&store, &RUNS, "tests::cache", "short", 1, ttl)
        .await
        .unwrap();
    assert_eq!(
        call(&store, &RUNS, "tests::cache", "short", 1, ttl)
            .await
            .unwrap(),
        first
    );

    // Replay from the cache until the record expires on the server, and
    // check every answer against what the server holds at that moment.
    let record_key = store.record_key(
        Idempotency::new(&store)
            .scope("tests::cache")
            .prepare("short", &1)
            .stored_key()
            .unwrap(),
    );
    let rerun = loop {
        let existed: i64 = server.query(redis::cmd("EXISTS").arg(&record_key));
        let outcome = call(&store, &RUNS, "tests::cache", "short", 1, ttl)
            .await
            .unwrap();
        if outcome != first {
            break outcome;
        }
        assert_eq!(existed, 1, "served {outcome:?} after the record expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        rerun, "short: 1 cents, run 2",
        "the body ran again once expired"
    );
}

#[tokio::test]
async fn a_record_of_another_scope_is_not_served() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    call(&store, &RUNS, "tests::cache::a", "shared-key", 7, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache::a", "shared-key", 7, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    let other = call(&store, &RUNS, "tests::cache::b", "shared-key", 7, HOUR)
        .await
        .unwrap();
    assert_eq!(
        other, "shared-key: 7 cents, run 2",
        "scope b ran its own body"
    );
    assert!(!commands(&server).is_empty(), "scope b asked the server");
}

#[tokio::test]
async fn another_input_under_a_cached_key_is_a_mismatch() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let store = cached_store(&server, HOUR).await;
    call(&store, &RUNS, "tests::cache", "order-9", 100, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache", "order-9", 100, HOUR)
        .await
        .unwrap();
    server.reset_stats();
    let reused = call(&store, &RUNS, "tests::cache", "order-9", 999, HOUR).await;
    assert!(matches!(reused, Err(Error::PayloadMismatch)), "{reused:?}");
    assert_eq!(commands(&server), vec![], "decided from the cache");
    assert_eq!(RUNS.count(), 1);
}

#[tokio::test]
async fn a_record_deleted_on_the_server_replays_here_for_max_age_at_most() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let max_age = Duration::from_millis(300);
    let store = cached_store(&server, max_age).await;
    let first = call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
        .await
        .unwrap();
    call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
        .await
        .unwrap();
    let cached_at = std::time::Instant::now();
    let _: redis::Value = server.query(&redis::cmd("FLUSHALL"));

    let rerun = loop {
        let outcome = call(&store, &RUNS, "tests::cache", "deleted", 1, HOUR)
            .await
            .unwrap();
        if outcome != first {
            break outcome;
        }
        assert!(cached_at.elapsed() < max_age, "served past max_age");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(rerun, "deleted: 1 cents, run 2");
}

#[tokio::test]
async fn a_clone_with_another_key_prefix_does_not_replay_the_first_prefix_records() {
    static RUNS: Runs = Runs::new();
    let server = RedisServer::start();
    let tenant_a = cached_store(&server, HOUR).await;
    let tenant_b = tenant_a.clone().with_key_prefix("tenant-b:");
    let a = call(&tenant_a, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    // A replay, so tenant a's record is in the cache the clones share.
    assert_eq!(
        call(&tenant_a, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap(),
        a
    );

    let b = call(&tenant_b, &RUNS, "tests::cache", "order-1", 500, HOUR)
        .await
        .unwrap();
    assert_eq!(b, "order-1: 500 cents, run 2", "tenant b ran its own body");
    let written: Vec<String> = server.query(redis::cmd("KEYS").arg("tenant-b:*"));
    assert_eq!(written.len(), 1, "tenant b's record: {written:?}");
    // And each tenant keeps replaying its own.
    for (store, expected) in [(&tenant_a, &a), (&tenant_b, &b)] {
        let replay = call(store, &RUNS, "tests::cache", "order-1", 500, HOUR)
            .await
            .unwrap();
        assert_eq!(&replay, expected);
    }
}

/// A TCP proxy in front of a server that, once armed, holds back the
/// client's next write from its `PTTL` on, until released: a claim's
/// `SET .. NX GET` reaches the server, and what the cache learns about the
/// record's expiry waits, as it could on a busy network.
struct HoldingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    held: Arc<Notify>,
    release: Arc<Notify>,
}

impl HoldingProxy {
    async fn start(server_port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            armed: Arc::new(AtomicBool::new(false)),
            held: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        let (armed, held, release) = (
            Arc::clone(&proxy.armed),
            Arc::clone(&proxy.held),
            Arc::clone(&proxy.release),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let server = TcpStream::connect(("127.0.0.1", server_port))
                    .await
                    .unwrap();
                let (mut from_client, to_client) = client.into_split();
                let (from_server, mut to_server) = server.into_split();
                tokio::spawn(copy(from_server, to_client));
                let (armed, held, release) =
                    (Arc::clone(&armed), Arc::clone(&held), Arc::clone(&release));
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    loop {
                        let read = match from_client.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => read,
                        };
                        let chunk = &buffer[..read];
                        // `*2\r\n$4\r\nPTTL`: the command starts 8 bytes
                        // before its name.
                        let split = find(chunk, b"PTTL").map(|at| at - 8);
                        if let Some(split) = split.filter(|_| armed.swap(false, Ordering::SeqCst)) {
                            if to_server.write_all(&chunk[..split]).await.is_err() {
                                return;
                            }
                            held.notify_one();
                            release.notified().await;
                            if to_server.write_all(&chunk[split..]).await.is_err() {
                                return;
                            }
                        } else if to_server.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        proxy
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[tokio::test]
async fn a_record_that_expires_and_is_claimed_again_while_the_cache_fills_is_not_cached() {
    const LEASE: Duration = Duration::from_secs(30);
    const KEY: &str = "tests::cache:refilled";
    let fingerprint = Fingerprint::from_bytes([7; 32]);
    let server = RedisServer::start();
    let proxy = HoldingProxy::start(server.port()).await;
    let cached = RedisBackend::connect(&proxy.url())
        .await
        .unwrap()
        .with_local_cache(100, HOUR);
    let direct = RedisBackend::connect(&server.url()).await.unwrap();

    let first = FencingToken::generate();
    let claimed = direct.claim(KEY, &fingerprint, first, LEASE).await.unwrap();
    assert!(
        matches!(claimed, ClaimOutcome::Acquired { .. }),
        "{claimed:?}"
    );
    direct.complete(KEY, first, b"old", HOUR).await.unwrap();

    proxy.armed.store(true, Ordering::SeqCst);
    let claiming = tokio::spawn({
        let cached = cached.clone();
        async move {
            cached
                .claim(KEY, &fingerprint, FencingToken::generate(), LEASE)
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), proxy.held.notified())
        .await
        .expect("the cached claim asks for the record's PTTL");

    // Meanwhile the record expires, and another caller claims the key.
    let record_key = direct.record_key(KEY);
    let _: i64 = server.query(redis::cmd("PEXPIRE").arg(&record_key).arg(1));
    while server.query::<i64>(redis::cmd("EXISTS").arg(&record_key)) == 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = FencingToken::generate();
    let claimed = direct
        .claim(KEY, &fingerprint, second, LEASE)
        .await
        .unwrap();
    assert!(
        matches!(claimed, ClaimOutcome::Acquired { .. }),
        "{claimed:?}"
    );
    proxy.release.notify_one();
    // Either answer is one the server gave at some instant: the old result
    // before it expired, or the new claim.
    let during = claiming.await.unwrap().unwrap();
    assert!(
        matches!(
            &during,
            ClaimOutcome::InProgress { .. } | ClaimOutcome::Completed { .. }
        ),
        "{during:?}"
    );

    direct.complete(KEY, second, b"new", HOUR).await.unwrap();
    let after = cached
        .claim(KEY, &fingerprint, FencingToken::generate(), LEASE)
        .await
        .unwrap();
    assert_eq!(
        after,
        ClaimOutcome::Completed {
            output: b"new".to_vec()
        },
        "the cache kept the expired record for the new claim's lifetime"
    );
}
