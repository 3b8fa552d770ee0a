//! Claims racing on one key from many tasks: one winner, never two holders.

use std::sync::Arc;
use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome, FencingToken};
use tokio::time::sleep;

use crate::check::{fp, Check};
use crate::show::Show;
use crate::timing::{LEASE, LONG_LEASE, PAST_LEASE, TTL};

/// How many tasks race in the concurrency rules.
const RACERS: usize = 100;

/// Races `RACERS` tasks, started together on the multi-thread runtime, each
/// claiming `key`; returns their outcomes.
async fn race_claims<B>(check: &Check<'_, B>, key: &str, lease: Duration) -> Vec<ClaimOutcome>
where
    B: Backend + Clone + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let backend = check.backend.clone();
            let start = Arc::clone(&start);
            let key = key.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                backend
                    .claim(&key, &fp("a"), FencingToken::generate(), lease)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(RACERS);
    for (racer, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(error)) => check.fail(
                &format!("concurrent claim #{racer} of {key:?}"),
                "an outcome",
                format_args!("Err({error})"),
            ),
            Err(error) => check.fail(
                &format!("concurrent claim #{racer} of {key:?}"),
                "an outcome",
                format_args!("the task failed: {error}"),
            ),
        }
    }
    outcomes
}

/// Checks that exactly one of `outcomes` is `Acquired { took_over }` and all
/// others `InProgress`; returns the winner's token.
fn exactly_one_acquired<B: Backend + ?Sized>(
    check: &Check<'_, B>,
    step: &str,
    outcomes: &[ClaimOutcome],
    took_over: bool,
) -> FencingToken {
    let mut winners = Vec::new();
    let mut others = Vec::new();
    for outcome in outcomes {
        match outcome {
            ClaimOutcome::Acquired {
                token,
                took_over: taken,
            } if *taken == took_over => winners.push(*token),
            ClaimOutcome::InProgress { .. } => {}
            other => others.push(other.clone()),
        }
    }
    if winners.len() != 1 || !others.is_empty() {
        check.fail(
            step,
            &format!(
                "exactly one Acquired {{ took_over: {took_over} }} and {} InProgress",
                RACERS - 1
            ),
            format_args!(
                "{} Acquired {{ took_over: {took_over} }} (tokens {winners:?}), {} InProgress, \
                 and {} other outcomes: {others:?}",
                winners.len(),
                outcomes.len() - winners.len() - others.len(),
                others.len()
            ),
        );
    }
    winners[0]
}

/// 100 tasks claiming one absent key at once, on a multi-thread runtime: exactly
/// one is `Acquired { took_over: false }`, the other 99 `InProgress`. Once the
/// winner completes, 100 concurrent claims all replay its output.
///
/// Takes a cloneable backend (an `Arc` of the store) to share with the tasks.
pub async fn concurrent_claims_acquire_exactly_once<B: Backend + Clone + 'static>(backend: &B) {
    let check = Check::new("concurrent_claims_acquire_exactly_once", backend);
    let key = check.key("k");
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let token = exactly_one_acquired(
        &check,
        &format!("{RACERS} concurrent claims of an absent key"),
        &outcomes,
        false,
    );
    let completed = check.complete(&key, token, b"winner", TTL).await;
    check.expect_cas("complete by the winner", completed, CasOutcome::Applied);
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let expected = ClaimOutcome::Completed {
        output: b"winner".to_vec(),
    };
    if let Some(other) = outcomes.iter().find(|outcome| **outcome != expected) {
        check.fail(
            &format!("{RACERS} concurrent claims of the completed key"),
            "each one Completed { output: b\"winner\" }",
            Show(other),
        );
    }
}

/// 100 tasks claiming at once a key whose lease ran out: exactly one takes it
/// over (`Acquired { took_over: true }`), the other 99 are `InProgress` (the
/// takeover is atomic, never two holders).
///
/// Takes a cloneable backend (an `Arc` of the store) to share with the tasks.
pub async fn concurrent_takeovers_acquire_exactly_once<B: Backend + Clone + 'static>(backend: &B) {
    let check = Check::new("concurrent_takeovers_acquire_exactly_once", backend);
    let key = check.key("k");
    let old = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let outcomes = race_claims(&check, &key, LONG_LEASE).await;
    let token = exactly_one_acquired(
        &check,
        &format!("{RACERS} concurrent claims after the lease ran out"),
        &outcomes,
        true,
    );
    if token == old {
        check.fail(
            "the takeover's token",
            &format!("a token other than the old one, {old:?}"),
            token,
        );
    }
    let released = check.release(&key, token).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}
