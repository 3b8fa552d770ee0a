//! A lease in time: a claim whose lease ran out is taken over (or is still
//! its fingerprint's), a renewal keeps it live, and a holder nobody took over
//! may still finish.

use std::time::Duration;

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome};
use tokio::time::{sleep, Instant};

use crate::check::{fp, Check};
use crate::show::Show;
use crate::timing::{LEASE, LONG_LEASE, PAST_LEASE, TTL};

/// A claim whose lease ran out (but not twice over) is taken over by a claim
/// with the same fingerprint: `Acquired { took_over: true }` with a token
/// other than the old one; the new claim is live.
pub async fn expired_lease_is_taken_over_with_a_new_token<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("expired_lease_is_taken_over_with_a_new_token", backend);
    let key = check.key("k");
    let old = check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let new = check
        .expect_takeover(
            &format!("claim {PAST_LEASE:?} after a claim with lease {LEASE:?}"),
            &key,
            &fp("a"),
            LEASE,
        )
        .await;
    if new == old {
        check.fail(
            "the takeover's token",
            &format!("a token other than the old one, {old:?}"),
            new,
        );
    }
    check
        .expect_in_progress("claim right after the takeover", &key, &fp("a"), LEASE)
        .await;
    let released = check.release(&key, new).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}

/// A claim whose lease ran out, claimed with another fingerprint, is
/// `Mismatch` (an expired lease is not an absent key); a claim with the
/// original fingerprint then still takes it over.
pub async fn expired_lease_with_other_fingerprint_is_mismatch<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("expired_lease_with_other_fingerprint_is_mismatch", backend);
    let key = check.key("k");
    check
        .expect_fresh("claim of an absent key", &key, &fp("a"), LEASE)
        .await;
    sleep(PAST_LEASE).await;
    check
        .expect_mismatch(
            &format!(
                "claim with another fingerprint {PAST_LEASE:?} after a claim with lease {LEASE:?}"
            ),
            &key,
            &fp("b"),
        )
        .await;
    let token = check
        .expect_takeover(
            "claim with the original fingerprint after the mismatch",
            &key,
            &fp("a"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}

/// Renewing sets the lease to `lease` from now: a claim renewed every 0.6 s
/// with a 1 s lease is still `InProgress` past its first lease (and past twice
/// it); a renew with a longer lease lengthens it.
pub async fn renew_extends_the_lease<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("renew_extends_the_lease", backend);
    let key = check.key("k");
    let a = fp("a");
    let start = Instant::now();
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LEASE)
        .await;
    for round in 1..=4 {
        sleep(Duration::from_millis(600)).await;
        let renewed = check.renew(&key, token, LEASE).await;
        check.expect_cas(
            &format!("renew #{round} by the holder, at {:?}", start.elapsed()),
            renewed,
            CasOutcome::Applied,
        );
    }
    check
        .expect_in_progress(
            &format!(
                "claim at {:?}, after renewals of a {LEASE:?} lease every 600ms",
                start.elapsed()
            ),
            &key,
            &a,
            LEASE,
        )
        .await;
    let longer = Duration::from_secs(20);
    let renewed = check.renew(&key, token, longer).await;
    check.expect_cas(
        &format!("renew with a longer lease of {longer:?}"),
        renewed,
        CasOutcome::Applied,
    );
    let remaining = check
        .expect_in_progress("claim after the longer renew", &key, &a, longer)
        .await;
    if remaining <= LEASE {
        check.fail(
            &format!("claim after a renew with a lease of {longer:?}"),
            &format!("lease_remaining > {LEASE:?}"),
            remaining,
        );
    }
    let completed = check.complete(&key, token, b"out", TTL).await;
    check.expect_cas("complete by the holder", completed, CasOutcome::Applied);
}

/// Complete, release and renew compare the token, not the clock: a holder
/// whose lease ran out but whom nobody took over (a slow call, not a crashed
/// one) may still complete (`Applied`, then replayed), renew (`Applied`, the
/// claim is live again) or release (`Applied`, the key is absent).
pub async fn slow_holder_not_taken_over_may_still_finish<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("slow_holder_not_taken_over_may_still_finish", backend);
    let a = fp("a");
    let (completes, renews, releases) = (
        check.key("completes"),
        check.key("renews"),
        check.key("releases"),
    );
    let mut tokens = Vec::new();
    for key in [&completes, &renews, &releases] {
        tokens.push(
            check
                .expect_fresh("claim of an absent key", key, &a, LEASE)
                .await,
        );
    }
    sleep(PAST_LEASE).await;
    let late = format!("{PAST_LEASE:?} after a claim with lease {LEASE:?}, nobody took over");

    let completed = check.complete(&completes, tokens[0], b"late", TTL).await;
    check.expect_cas(&format!("complete {late}"), completed, CasOutcome::Applied);
    check
        .expect_completed("replay of the late completion", &completes, &a, b"late")
        .await;

    let renewed = check.renew(&renews, tokens[1], LONG_LEASE).await;
    check.expect_cas(&format!("renew {late}"), renewed, CasOutcome::Applied);
    check
        .expect_in_progress("claim after the late renew", &renews, &a, LONG_LEASE)
        .await;
    let released = check.release(&renews, tokens[1]).await;
    check.expect_cas(
        "release after the late renew",
        released,
        CasOutcome::Applied,
    );

    let released = check.release(&releases, tokens[2]).await;
    check.expect_cas(&format!("release {late}"), released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            "claim after the late release",
            &releases,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&releases, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}

/// A takeover sent again with its own token (a transport that retried the
/// claim of an expired key) finds itself: `Acquired`, not `InProgress`, so a
/// store that checks the lease before the token cannot block the key for a
/// lease. Whether the second copy reports `took_over` is left open: it cannot
/// know whether the first copy took over. Another token still finds the key
/// in progress.
pub async fn a_takeover_sent_twice_is_acquired<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("a_takeover_sent_twice_is_acquired", backend);
    let key = check.key("k");
    let a = fp("a");
    check
        .expect_fresh("claim of an absent key", &key, &a, LEASE)
        .await;
    sleep(PAST_LEASE).await;
    let token = check
        .expect_takeover("claim after the lease ran out", &key, &a, LONG_LEASE)
        .await;
    match check.claim(&key, &a, token, LONG_LEASE).await {
        ClaimOutcome::Acquired { token: again, .. } if again == token => {}
        other => check.fail(
            "the takeover, sent again",
            "Acquired { token: the takeover's, .. }",
            Show(&other),
        ),
    }
    check
        .expect_in_progress("a claim with another token", &key, &a, LONG_LEASE)
        .await;
    let released = check.release(&key, token).await;
    check.expect_cas("release by the new holder", released, CasOutcome::Applied);
}
