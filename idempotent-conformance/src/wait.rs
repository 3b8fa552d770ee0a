//! The wake-up hint: `wait_for_change` returns within its bound.

use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome, FencingToken};
use tokio::time::{sleep, Instant};

use crate::check::{fp, Check};
use crate::show::Show;
use crate::timing::{LONG_LEASE, MARGIN, TTL};

/// Calls `wait_for_change(key, at_most)`, asserting it is `Ok` and returns
/// within `at_most` plus a margin.
async fn wait<B: Backend + ?Sized>(check: &Check<'_, B>, step: &str, key: &str, at_most: Duration) {
    let start = Instant::now();
    if let Err(error) = check.backend.wait_for_change(key, at_most).await {
        check.fail(step, "Ok(())", format_args!("Err({error})"));
    }
    let waited = start.elapsed();
    if waited > at_most + MARGIN {
        check.fail(
            step,
            &format!("a return within at_most ({at_most:?}) + {MARGIN:?}"),
            format_args!("a return after {waited:?}"),
        );
    }
}

/// `wait_for_change` returns `Ok` within its `at_most` (plus a generous
/// margin) on an absent key, a completed key and a live claim nobody touches;
/// and a duplicate waiting on a live claim that another task completes then
/// finds it `Completed` (an early or spurious return is allowed: the waiter
/// claims again and may wait again).
pub async fn wait_for_change_returns<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("wait_for_change_returns", backend);
    let a = fp("a");
    let short = Duration::from_millis(300);

    let absent = check.key("absent");
    wait(&check, "wait_for_change on an absent key", &absent, short).await;
    check
        .expect_fresh("claim of the absent key waited on", &absent, &a, LONG_LEASE)
        .await;

    let done = check.key("done");
    let token = check
        .expect_fresh("claim of an absent key", &done, &a, LONG_LEASE)
        .await;
    let completed = check.complete(&done, token, b"done", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    wait(&check, "wait_for_change on a completed key", &done, short).await;

    let idle = check.key("idle");
    check
        .expect_fresh("claim of an absent key", &idle, &a, LONG_LEASE)
        .await;
    wait(
        &check,
        &format!("wait_for_change({short:?}) on a live claim with a {LONG_LEASE:?} lease"),
        &idle,
        short,
    )
    .await;

    let busy = check.key("busy");
    let token = check
        .expect_fresh("claim of an absent key", &busy, &a, LONG_LEASE)
        .await;
    let at_most = Duration::from_secs(2);
    let holder = async {
        sleep(Duration::from_millis(200)).await;
        let completed = check.complete(&busy, token, b"result", TTL).await;
        check.expect_cas(
            "complete by the holder while a duplicate waits",
            completed,
            CasOutcome::Applied,
        );
    };
    let waiter = async {
        let start = Instant::now();
        loop {
            wait(
                &check,
                &format!("wait_for_change({at_most:?}) on a live claim the holder completes"),
                &busy,
                at_most,
            )
            .await;
            match check
                .claim(&busy, &a, FencingToken::generate(), LONG_LEASE)
                .await
            {
                ClaimOutcome::Completed { output } if output == b"result" => break,
                ClaimOutcome::InProgress { .. } if start.elapsed() < at_most + MARGIN => {}
                other => check.fail(
                    &format!(
                        "claim by the duplicate after waiting {:?} for a holder that completes \
                         after 200ms",
                        start.elapsed()
                    ),
                    "Completed { output: b\"result\" }",
                    Show(&other),
                ),
            }
        }
    };
    tokio::join!(holder, waiter);
}
