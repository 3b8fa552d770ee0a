//! Releasing a claim, in place or from where a dropped call cannot await.

use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome, FencingToken};
use tokio::time::{sleep, Instant};

use crate::check::{fp, Check};
use crate::show::Show;
use crate::timing::{BACKGROUND_BOUND, LONG_LEASE};

/// A release by the holder is `Applied` and deletes the claim: the next claim,
/// with any fingerprint, is `Acquired { took_over: false }`; releasing again
/// is `Fenced`.
pub async fn released_key_is_acquired_afresh<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("released_key_is_acquired_afresh", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
    let released = check.release(&key, token).await;
    check.expect_cas(
        "second release with the same token",
        released,
        CasOutcome::Fenced,
    );
    let token = check
        .expect_fresh("claim after the release", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            "claim with another fingerprint after a release (the record is gone)",
            &key,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release of the last claim", released, CasOutcome::Applied);
}

/// `release_in_background` by the holder releases the claim, at once or
/// soon (within 5 s): the key becomes absent, `Acquired { took_over: false }`.
pub async fn release_in_background_releases<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("release_in_background_releases", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let start = Instant::now();
    idempotent_core::backend::release_in_background(backend, "conformance", &key, token);
    loop {
        match check
            .claim(&key, &a, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: false,
            } => {
                let released = check.release(&key, token).await;
                check.expect_cas("release of the new claim", released, CasOutcome::Applied);
                return;
            }
            ClaimOutcome::InProgress { .. } if start.elapsed() < BACKGROUND_BOUND => {
                sleep(Duration::from_millis(20)).await;
            }
            other => check.fail(
                &format!(
                    "claim {:?} after release_in_background by the holder",
                    start.elapsed()
                ),
                &format!("Acquired {{ took_over: false, .. }} within {BACKGROUND_BOUND:?}"),
                Show(&other),
            ),
        }
    }
}
