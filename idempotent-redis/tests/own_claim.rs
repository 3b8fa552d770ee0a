//! A claim that reaches the server twice (the transport sent it again after
//! a lost reply) finds its own claim, and must be told it holds the key, not
//! that the key is in progress: otherwise its caller gives up on a claim it
//! holds, and nobody runs the body until the lease runs out.

use std::time::Duration;

use idempotent_core::backend::{ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::Backend;
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

const LEASE: Duration = Duration::from_secs(30);

/// The store plain and with a local cache, on one private server.
async fn stores(server: &RedisServer) -> [(&'static str, RedisBackend); 2] {
    let plain = RedisBackend::connect(&server.url()).await.unwrap();
    let cached = plain
        .clone()
        .with_key_prefix("cached:")
        .with_local_cache(100, Duration::from_secs(60));
    [("plain", plain), ("cached", cached)]
}

#[tokio::test]
async fn a_claim_sent_twice_acquires_both_times() {
    let server = RedisServer::start();
    let fingerprint = Fingerprint::from_bytes([1; 32]);
    for (name, store) in stores(&server).await {
        let token = FencingToken::generate();
        for attempt in ["first", "again"] {
            let outcome = store
                .claim("own:fresh", &fingerprint, token, LEASE)
                .await
                .unwrap();
            assert_eq!(
                outcome,
                ClaimOutcome::Acquired {
                    token,
                    took_over: false
                },
                "{name}, {attempt}"
            );
        }
        // Another token still finds the key in progress.
        let other = store
            .claim("own:fresh", &fingerprint, FencingToken::generate(), LEASE)
            .await
            .unwrap();
        assert!(
            matches!(other, ClaimOutcome::InProgress { .. }),
            "{name}: {other:?}"
        );
    }
}

/// Writes a claim of another caller whose lease ran out but whose key lives
/// on (the record layout of `record.rs`: the lease held, 60 s, is longer than
/// the key's remaining 30 s), so the next claim takes it over whatever the
/// machine's speed.
fn plant_expired_claim(
    server: &RedisServer,
    store: &RedisBackend,
    key: &str,
    fingerprint: &Fingerprint,
) {
    let mut record = b"idem1P".to_vec();
    record.extend_from_slice(fingerprint.as_bytes());
    record.extend_from_slice(b"00000000000000aa60000");
    let () = server.query(
        redis::cmd("SET")
            .arg(store.record_key(key))
            .arg(record)
            .arg("PX")
            .arg(30_000),
    );
}

#[tokio::test]
async fn a_takeover_sent_twice_acquires_both_times() {
    let server = RedisServer::start();
    let fingerprint = Fingerprint::from_bytes([2; 32]);
    for (name, store) in stores(&server).await {
        plant_expired_claim(&server, &store, "own:taken-over", &fingerprint);
        let token = FencingToken::generate();
        let outcome = store
            .claim("own:taken-over", &fingerprint, token, LEASE)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            ClaimOutcome::Acquired {
                token,
                took_over: true
            },
            "{name}: the takeover"
        );
        let again = store
            .claim("own:taken-over", &fingerprint, token, LEASE)
            .await
            .unwrap();
        assert!(
            matches!(again, ClaimOutcome::Acquired { token: t, .. } if t == token),
            "{name}: the takeover sent again: {again:?}"
        );
    }
}
