//! What a call costs on the server, read from `INFO commandstats` deltas of a
//! private redis-server: a replay is one command, a first run two.

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;
use idempotent_test_support::RedisServer;

/// Commands the scripts issue from inside Lua. `INFO commandstats` counts
/// them too, but they cost no round trip.
const INSIDE_SCRIPTS: &[&str] = &["hmget", "hset", "hdel", "pexpire", "time", "exists", "del"];

/// Calls per command name.
type Counts = Vec<(String, u64)>;

/// What the server ran since the last reset, split into commands sent by
/// clients (round trips) and commands run inside scripts.
fn commands_since_reset(server: &RedisServer) -> (Counts, Counts) {
    server
        .command_counts()
        .into_iter()
        .filter(|(name, _)| name != "config|resetstat" && name != "info")
        .partition(|(name, _)| !INSIDE_SCRIPTS.contains(&name.as_str()))
}

#[tokio::test]
async fn a_first_run_costs_two_commands_and_a_replay_one() {
    let server = RedisServer::start();
    let store = RedisBackend::connect(&server.url()).await.unwrap();
    let call = |key: &'static str| {
        let store = &store;
        async move {
            Idempotency::new(store)
                .scope("tests::round_trips")
                .run(key, &1, || async { Ok::<_, Error>(42u32) })
                .await
        }
    };
    // Warm up: the first use of each script loads it into the server cache.
    call("warm-up").await.unwrap();
    call("warm-up").await.unwrap();

    server.reset_stats();
    assert_eq!(call("order-1").await.unwrap(), 42);
    let (sent, inside) = commands_since_reset(&server);
    assert_eq!(
        sent,
        vec![("evalsha".to_owned(), 2)],
        "a first run: claim + complete"
    );
    eprintln!("first run: sent {sent:?}, inside the scripts {inside:?}");

    server.reset_stats();
    assert_eq!(call("order-1").await.unwrap(), 42);
    let (sent, inside) = commands_since_reset(&server);
    assert_eq!(
        sent,
        vec![("evalsha".to_owned(), 1)],
        "a replay: one claim that returns the stored result"
    );
    assert_eq!(
        inside,
        vec![("hmget".to_owned(), 1)],
        "a replay reads the record and nothing else"
    );
    eprintln!("replay: sent {sent:?}, inside the script {inside:?}");
}
