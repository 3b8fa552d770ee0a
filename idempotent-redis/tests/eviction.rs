//! Every key the store writes has an expiry, so a server whose
//! `maxmemory-policy` evicts keys (`allkeys-*` or `volatile-*`) may delete a
//! live claim or a stored result. The store warns at connect, and the
//! consequence is what the docs say: a second caller acquires the key and
//! runs the body while the first still runs, and the first's result is
//! fenced off.

mod common;

use std::time::Duration;

use common::{logged, Collector};
use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::Backend;
use idempotent_redis::RedisBackend;
use idempotent_test_support::{RedisOptions, RedisServer};
use tracing::Level;

const LEASE: Duration = Duration::from_secs(60);

fn server_with(args: &[&str]) -> RedisServer {
    RedisServer::start_with(RedisOptions {
        extra_args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..RedisOptions::default()
    })
}

fn eviction_warnings(collector: &Collector) -> Vec<common::Logged> {
    collector
        .at(Level::WARN)
        .into_iter()
        .filter(|event| event.fields.contains_key("policy"))
        .collect()
}

#[test]
fn an_evicting_policy_is_warned_about_and_an_evicted_claim_lets_a_second_caller_run() {
    let server = server_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let collector = Collector::default();
    logged(&collector, async {
        let store = RedisBackend::connect(&server.url()).await.unwrap();
        let warnings = eviction_warnings(&collector);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].fields["policy"], "allkeys-lru", "{warnings:#?}");
        assert!(warnings[0].message.contains("evict"), "{warnings:#?}");

        let fingerprint = Fingerprint::from_bytes([1; 32]);
        let record_key = store.record_key("eviction:claimed");
        let first = FencingToken::generate();
        let claimed = store
            .claim("eviction:claimed", &fingerprint, first, LEASE)
            .await
            .unwrap();
        assert!(
            matches!(claimed, ClaimOutcome::Acquired { .. }),
            "{claimed:?}"
        );

        // Other data fills the server's memory until the claim is evicted.
        let filler = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while server.query::<i64>(redis::cmd("EXISTS").arg(&record_key)) == 1 {
            assert!(written < 2_000, "the claim survived {written} fillers");
            let () = server.query(
                redis::cmd("SET")
                    .arg(format!("filler:{written}"))
                    .arg(&filler),
            );
            written += 1;
        }

        // The first caller still runs its body, and a second caller runs it too.
        let second = FencingToken::generate();
        let claimed = store
            .claim("eviction:claimed", &fingerprint, second, LEASE)
            .await
            .unwrap();
        assert_eq!(
            claimed,
            ClaimOutcome::Acquired {
                token: second,
                took_over: false
            }
        );
        let first_result = store
            .complete("eviction:claimed", first, b"first", LEASE)
            .await
            .unwrap();
        assert_eq!(
            first_result,
            CasOutcome::Fenced,
            "the first result is fenced off"
        );
    });
}

#[test]
fn noeviction_is_not_warned_about() {
    let server = server_with(&["--maxmemory-policy", "noeviction"]);
    let collector = Collector::default();
    logged(&collector, RedisBackend::connect(&server.url())).unwrap();
    assert_eq!(eviction_warnings(&collector).len(), 0);
}

#[test]
fn a_server_without_config_is_used_all_the_same() {
    // As on managed services that disable or rename CONFIG.
    let server = server_with(&[
        "--maxmemory-policy",
        "allkeys-lru",
        "--rename-command",
        "CONFIG",
        "",
    ]);
    let collector = Collector::default();
    logged(&collector, async {
        let store = RedisBackend::connect(&server.url()).await.unwrap();
        assert_eq!(eviction_warnings(&collector).len(), 0);
        let debug = collector.at(Level::DEBUG);
        assert!(
            debug
                .iter()
                .any(|event| event.message.contains("maxmemory-policy")),
            "{debug:#?}"
        );
        let claimed = store
            .claim(
                "eviction:no-config",
                &Fingerprint::from_bytes([2; 32]),
                FencingToken::generate(),
                LEASE,
            )
            .await
            .unwrap();
        assert!(
            matches!(claimed, ClaimOutcome::Acquired { .. }),
            "{claimed:?}"
        );
    });
}
