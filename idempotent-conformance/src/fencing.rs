//! The token compare-and-set: complete, release and renew change a record
//! only with the token of the claim stored there.

use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, FencingToken};
use tokio::time::sleep;

use crate::check::{fp, Check};
use crate::timing::{LEASE, LONG_LEASE, PAST_LEASE, TTL};

/// Fencing: after a takeover, the stale holder's complete, release, renew and
/// `release_in_background` are `Fenced` (or no-ops) and change nothing; the
/// new holder completes, the stale complete is still `Fenced`, and the stored
/// output is the new holder's.
pub async fn stale_token_is_fenced_after_takeover<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("stale_token_is_fenced_after_takeover", backend);
    let key = check.key("k");
    let a = fp("a");
    let old = check
        .expect_fresh("claim of an absent key", &key, &a, LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let new = check
        .expect_takeover("claim after the lease ran out", &key, &a, LONG_LEASE)
        .await;

    let completed = check.complete(&key, old, b"stale", TTL).await;
    check.expect_cas(
        "complete with the stale token",
        completed,
        CasOutcome::Fenced,
    );
    let released = check.release(&key, old).await;
    check.expect_cas("release with the stale token", released, CasOutcome::Fenced);
    let renewed = check.renew(&key, old, LEASE).await;
    check.expect_cas("renew with the stale token", renewed, CasOutcome::Fenced);
    idempotent_core::backend::release_in_background(backend, "conformance", &key, old);
    // A network store releases in the background: give it time to do harm.
    sleep(Duration::from_millis(300)).await;
    check
        .expect_in_progress(
            "claim after the stale holder's complete, release, renew and \
             release_in_background (the new claim must be untouched)",
            &key,
            &a,
            LONG_LEASE,
        )
        .await;

    let completed = check.complete(&key, new, b"new", TTL).await;
    check.expect_cas("complete by the new holder", completed, CasOutcome::Applied);
    let completed = check.complete(&key, old, b"stale", TTL).await;
    check.expect_cas(
        "complete with the stale token after the new holder completed",
        completed,
        CasOutcome::Fenced,
    );
    check
        .expect_completed("replay: the new holder's output", &key, &a, b"new")
        .await;
}

/// Complete, release and renew with a token never issued for the key are
/// `Fenced` and change nothing; on an absent key they are `Fenced` and leave
/// it absent.
pub async fn unknown_token_or_absent_key_is_fenced<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("unknown_token_or_absent_key_is_fenced", backend);
    let key = check.key("held");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let value = token.get();
    let mut wrong: Vec<u64> = vec![
        value.wrapping_add(1),
        value.wrapping_sub(1),
        !value,
        0,
        u64::MAX,
    ];
    wrong.retain(|&candidate| candidate != value);
    for wrong in wrong.into_iter().map(FencingToken::new) {
        let completed = check.complete(&key, wrong, b"forged", TTL).await;
        check.expect_cas(
            &format!("complete with {wrong:?} while {token:?} holds the key"),
            completed,
            CasOutcome::Fenced,
        );
        let renewed = check.renew(&key, wrong, LEASE).await;
        check.expect_cas(
            &format!("renew with {wrong:?} while {token:?} holds the key"),
            renewed,
            CasOutcome::Fenced,
        );
        let released = check.release(&key, wrong).await;
        check.expect_cas(
            &format!("release with {wrong:?} while {token:?} holds the key"),
            released,
            CasOutcome::Fenced,
        );
    }
    check
        .expect_in_progress(
            "claim after the forged tokens (the claim must be untouched)",
            &key,
            &a,
            LONG_LEASE,
        )
        .await;
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas(
        "complete by the real holder",
        completed,
        CasOutcome::Applied,
    );
    check
        .expect_completed("replay of the real holder's output", &key, &a, b"out")
        .await;

    let absent = check.key("absent");
    for token in [token, FencingToken::new(1), FencingToken::new(0)] {
        let completed = check.complete(&absent, token, b"forged", TTL).await;
        check.expect_cas(
            &format!("complete of an absent key with {token:?}"),
            completed,
            CasOutcome::Fenced,
        );
        let renewed = check.renew(&absent, token, LONG_LEASE).await;
        check.expect_cas(
            &format!("renew of an absent key with {token:?}"),
            renewed,
            CasOutcome::Fenced,
        );
        let released = check.release(&absent, token).await;
        check.expect_cas(
            &format!("release of an absent key with {token:?}"),
            released,
            CasOutcome::Fenced,
        );
    }
    check
        .expect_fresh(
            "claim of the key that complete, renew and release were fenced on \
             (it must still be absent)",
            &absent,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
}

/// Completing again with the completing claim's token (a retry whose first
/// reply was lost) is `Applied` and leaves the first output; release and
/// renew with that token are `Fenced`: a completed record is no claim.
pub async fn repeated_complete_is_applied_once<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("repeated_complete_is_applied_once", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let completed = check.complete(&key, token, b"first", TTL).await;
    check.expect_cas("first complete", completed, CasOutcome::Applied);
    // A retry of a complete whose reply was lost (the connection dropped
    // after the store applied it) must not look fenced to its caller.
    let completed = check.complete(&key, token, b"second", TTL).await;
    check.expect_cas(
        "second complete with the same token (a retried completion)",
        completed,
        CasOutcome::Applied,
    );
    let released = check.release(&key, token).await;
    check.expect_cas(
        "release with the completed claim's token",
        released,
        CasOutcome::Fenced,
    );
    let renewed = check.renew(&key, token, LONG_LEASE).await;
    check.expect_cas(
        "renew with the completed claim's token",
        renewed,
        CasOutcome::Fenced,
    );
    check
        .expect_completed("replay: the first output, untouched", &key, &a, b"first")
        .await;
}
