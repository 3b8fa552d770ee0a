//! A process of the stale-holder test (`tests/redis_faults.rs`): it claims a
//! key through the runtime and then gets frozen with SIGSTOP by the test, for
//! longer than its lease, while the test takes the key over.
//!
//! `stall-worker <redis-url> <key>` calls `Idempotency::new(&store)
//! .scope(SCOPE).lease(1 s).run(key, key, body)` on its own `RedisBackend`.
//! The body prints `claimed` (flushed), sleeps 3 s (awaiting, so renewal can
//! run whenever the process runs) and returns `"stale holder's result"`.
//!
//! Its last line is the outcome and this process's own counters, tab-separated:
//! `done<TAB>ok=<returned value>|err=<error><TAB>fenced=N<TAB>leases_lost=N...`.
//! Counters are process-wide, so reading them here, in a process that makes
//! exactly one call, shows exactly what that call did.

use std::io::Write;
use std::time::Duration;

use idempotent_core::{Error, Idempotency};
use idempotent_redis::RedisBackend;

/// Shared with the test, which must use the same scope and input to hit the
/// same record.
const SCOPE: &str = "tests::redis_faults::stall";
const LEASE: Duration = Duration::from_secs(1);
const BODY: Duration = Duration::from_secs(3);

fn arg(args: &[String], index: usize, name: &str) -> String {
    args.get(index)
        .cloned()
        .unwrap_or_else(|| panic!("usage: stall-worker <redis-url> <key>; missing {name}"))
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").expect("write to stdout");
    stdout.flush().expect("flush stdout");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, 1, "redis-url");
    let key = arg(&args, 2, "key");

    let store = RedisBackend::connect(&url)
        .await
        .expect("connect the store");
    let outcome: Result<String, Error> = Idempotency::new(&store)
        .scope(SCOPE)
        .lease(LEASE)
        .run(&key, &key, || async {
            say("claimed");
            tokio::time::sleep(BODY).await;
            Ok("stale holder's result".to_owned())
        })
        .await;

    let stats = idempotent_core::stats();
    let outcome = match outcome {
        Ok(value) => format!("ok={value}"),
        Err(error) => format!("err={error}"),
    };
    say(&format!(
        "done\t{outcome}\tcalls={}\texecutions={}\ttakeovers={}\trenew_failures={}\t\
         leases_lost={}\tfenced={}\tcomplete_retries={}\tresults_not_stored={}",
        stats.calls,
        stats.executions,
        stats.takeovers,
        stats.renew_failures,
        stats.leases_lost,
        stats.fenced,
        stats.complete_retries,
        stats.results_not_stored,
    ));
}
