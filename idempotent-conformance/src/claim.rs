//! What a claim finds: an absent key, a live claim or a completed record,
//! claimed with the same fingerprint or another; and a claim that finds itself.

use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome};

use crate::check::{fp, Check};
use crate::show::Show;
use crate::timing::{LONG_LEASE, TTL};

/// An absent key is acquired, not taken over: `Acquired { took_over: false }`;
/// the claim is then live (`InProgress`).
pub async fn absent_key_is_acquired<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("absent_key_is_acquired", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    check
        .expect_in_progress("claim again after acquiring", &key, &fp("a"), LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
}

/// A completed key claimed with the same fingerprint replays the output given
/// to `complete`, byte-exact, every time, without changing the record.
pub async fn completed_key_replays_its_output<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_key_replays_its_output", backend);
    let key = check.key("k");
    let output = b"{\"receipt\":42}\n";
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, output, TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    for attempt in 1..=3 {
        check
            .expect_completed(
                &format!("replay #{attempt} with the same fingerprint"),
                &key,
                &fp("a"),
                output,
            )
            .await;
    }
}

/// A completed key claimed with another fingerprint is `Mismatch`, and the
/// record stays: the original fingerprint still replays it.
pub async fn completed_key_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_key_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
    check
        .expect_mismatch(
            "claim of a completed key with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_completed(
            "replay with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            b"out",
        )
        .await;
}

/// A live claim claimed again with the same fingerprint is `InProgress`, with
/// `0 < lease_remaining <= lease`; the holder still holds it.
pub async fn live_claim_is_in_progress<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("live_claim_is_in_progress", backend);
    let key = check.key("k");
    let lease = Duration::from_secs(20);
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), lease)
        .await;
    for attempt in 1..=2 {
        check
            .expect_in_progress(
                &format!("claim #{attempt} of a live claim (lease {lease:?})"),
                &key,
                &fp("a"),
                lease,
            )
            .await;
    }
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas(
        "complete by the holder after duplicates were refused",
        completed,
        CasOutcome::Applied,
    );
}

/// A live claim claimed with another fingerprint is `Mismatch`, and the claim
/// stays live for its fingerprint.
pub async fn live_claim_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("live_claim_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    let token = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LONG_LEASE)
        .await;
    check
        .expect_mismatch(
            "claim of a live claim with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_in_progress(
            "claim with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the holder", released, CasOutcome::Applied);
}

/// A claim sent again with the token of the live claim it made (a transport
/// that retried it, a reply that was lost) finds itself: `Acquired {
/// took_over: false }`, not `InProgress`. Another token still finds the key
/// in progress, and the same token with another fingerprint a mismatch.
pub async fn a_claim_sent_twice_is_acquired<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("a_claim_sent_twice_is_acquired", backend);
    let key = check.key("k");
    let (a, b) = (fp("a"), fp("b"));
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    match check.claim(&key, &a, token, LONG_LEASE).await {
        ClaimOutcome::Acquired {
            took_over: false, ..
        } => {}
        other => check.fail(
            "the same claim, sent again",
            "Acquired { took_over: false, .. }",
            Show(&other),
        ),
    }
    check
        .expect_in_progress("a claim with another token", &key, &a, LONG_LEASE)
        .await;
    let other = check.claim(&key, &b, token, LONG_LEASE).await;
    if other != ClaimOutcome::Mismatch {
        check.fail(
            "the same token, another fingerprint",
            "Mismatch",
            Show(&other),
        );
    }
    let completed = check.complete(&key, token, b"done", TTL).await;
    check.expect_cas("complete of the claim", completed, CasOutcome::Applied);
    check
        .expect_completed("the same token after completion", &key, &a, b"done")
        .await;
}
