//! Leases and ttls a caller of the `Backend` trait passes straight to the
//! store, outside what `idempotent_core::limits` allows: the store refuses
//! them with a clear error before sending anything, rather than writing a
//! claim that expires at once or sending an expiry Redis rejects (after the
//! body ran, for a ttl).

use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::limits::{MAX_LEASE, MAX_TTL, MIN_LEASE};
use idempotent_core::{Backend, BackendError, BackendErrorKind};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

const LEASE: Duration = Duration::from_secs(30);

/// Too short (nothing, or under the stores' 1 ms resolution) or too long.
const OUT_OF_RANGE: [Duration; 3] = [Duration::ZERO, Duration::from_micros(999), Duration::MAX];
const LEASES_OUT_OF_RANGE: [Duration; 3] = [
    Duration::ZERO,
    MIN_LEASE.saturating_sub(Duration::from_millis(1)),
    Duration::MAX,
];

fn assert_refused(result: Result<impl std::fmt::Debug, BackendError>, what: &str, value: Duration) {
    let error = match result {
        Ok(outcome) => panic!("a {what} of {value:?} was accepted: {outcome:?}"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), BackendErrorKind::Other, "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("`{what}`")) && message.contains(&format!("{value:?}")),
        "the error names the {what} and its value: {message}"
    );
}

/// Commands the store sent since the last reset.
fn sent(server: &RedisServer) -> Vec<String> {
    server
        .command_counts()
        .into_keys()
        .filter(|name| name != "config|resetstat" && name != "info")
        .collect()
}

#[tokio::test]
async fn a_lease_out_of_range_is_refused_before_anything_is_claimed() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let fingerprint = Fingerprint::from_bytes([1; 32]);
    for lease in LEASES_OUT_OF_RANGE {
        server.reset_stats();
        let claimed = store
            .claim(
                "durations:claim",
                &fingerprint,
                FencingToken::generate(),
                lease,
            )
            .await;
        assert_refused(claimed, "lease", lease);
        assert_eq!(sent(&server), Vec::<String>::new(), "lease {lease:?}");
    }
    let longest = store
        .claim(
            "durations:claim",
            &fingerprint,
            FencingToken::generate(),
            MAX_LEASE,
        )
        .await
        .unwrap();
    assert!(
        matches!(longest, ClaimOutcome::Acquired { .. }),
        "{longest:?}"
    );

    let token = FencingToken::generate();
    store
        .claim("durations:renew", &fingerprint, token, LEASE)
        .await
        .unwrap();
    for lease in LEASES_OUT_OF_RANGE {
        server.reset_stats();
        assert_refused(
            store.renew("durations:renew", token, lease).await,
            "lease",
            lease,
        );
        assert_eq!(sent(&server), Vec::<String>::new(), "renew {lease:?}");
    }
    for lease in [MIN_LEASE, MAX_LEASE] {
        let renewed = store.renew("durations:renew", token, lease).await.unwrap();
        assert_eq!(renewed, CasOutcome::Applied, "renew {lease:?}");
    }
}

#[tokio::test]
async fn a_ttl_out_of_range_is_refused_and_the_claim_kept() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let fingerprint = Fingerprint::from_bytes([2; 32]);
    let token = FencingToken::generate();
    store
        .claim("durations:complete", &fingerprint, token, LEASE)
        .await
        .unwrap();
    for ttl in OUT_OF_RANGE
        .into_iter()
        .chain([MAX_TTL + Duration::from_millis(1)])
    {
        server.reset_stats();
        assert_refused(
            store
                .complete("durations:complete", token, b"out", ttl)
                .await,
            "ttl",
            ttl,
        );
        assert_eq!(sent(&server), Vec::<String>::new(), "ttl {ttl:?}");
    }
    // Still the caller's claim, so the result can be stored with a valid ttl.
    let completed = store
        .complete("durations:complete", token, b"out", MAX_TTL)
        .await
        .unwrap();
    assert_eq!(completed, CasOutcome::Applied);
    let expires_in_ms: i64 =
        server.query(redis::cmd("PTTL").arg(store.record_key("durations:complete")));
    let max_ttl_ms = i64::try_from(MAX_TTL.as_millis()).unwrap();
    assert!(
        expires_in_ms > max_ttl_ms - 60_000 && expires_in_ms <= max_ttl_ms,
        "kept for MAX_TTL: {expires_in_ms} ms"
    );
    let replay = store
        .claim(
            "durations:complete",
            &fingerprint,
            FencingToken::generate(),
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!(
        replay,
        ClaimOutcome::Completed {
            output: b"out".to_vec()
        }
    );
}
