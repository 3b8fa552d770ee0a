//! What a store forgets on its own: a completed record after its ttl, an
//! abandoned claim after twice its lease.

use idempotent_core::backend::{Backend, CasOutcome};
use tokio::time::sleep;

use crate::check::{fp, Check};
use crate::timing::{LEASE, LONG_LEASE, PAST_SHORT_TTL, PAST_TWICE_LEASE, SHORT_TTL};

/// A completed record is replayed until its ttl runs out, then the key is
/// absent: `Acquired { took_over: false }` with the same fingerprint or
/// another.
pub async fn completed_record_expires_after_its_ttl<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("completed_record_expires_after_its_ttl", backend);
    let (same, other) = (check.key("same"), check.key("other"));
    for key in [&same, &other] {
        let token = check
            .expect_fresh("claim of an absent key", key, &fp("a"), LONG_LEASE)
            .await;
        let completed = check.complete(key, token, b"out", SHORT_TTL).await;
        check.expect_cas(
            &format!("complete with a ttl of {SHORT_TTL:?}"),
            completed,
            CasOutcome::Applied,
        );
        check
            .expect_completed("replay before the ttl ran out", key, &fp("a"), b"out")
            .await;
    }
    sleep(PAST_SHORT_TTL).await;
    let step = format!("claim {PAST_SHORT_TTL:?} after completing with a ttl of {SHORT_TTL:?}");
    let token = check.expect_fresh(&step, &same, &fp("a"), LONG_LEASE).await;
    let released = check.release(&same, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            &format!("{step}, with another fingerprint"),
            &other,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&other, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}

/// A claim neither renewed, completed nor released is kept after its lease
/// runs out (for takeover and mismatch, see
/// [`lease::expired_lease_is_taken_over_with_a_new_token`](crate::lease::expired_lease_is_taken_over_with_a_new_token))
/// but forgotten by twice its lease after it was granted: 2.5 × the lease
/// later the key is absent,
/// `Acquired { took_over: false }` with the same fingerprint or another.
///
/// So a store bounds its memory by expiring claims at 2 × lease (the
/// `MemoryBackend` forgets them then; a Redis store sets `PEXPIRE` to it).
pub async fn abandoned_claim_is_forgotten_after_twice_its_lease<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new(
        "abandoned_claim_is_forgotten_after_twice_its_lease",
        backend,
    );
    let (same, other) = (check.key("same"), check.key("other"));
    for key in [&same, &other] {
        check
            .expect_fresh("claim of an absent key", key, &fp("a"), LEASE)
            .await;
    }
    sleep(PAST_TWICE_LEASE).await;
    let step = format!("claim {PAST_TWICE_LEASE:?} after an abandoned claim with lease {LEASE:?}");
    let token = check.expect_fresh(&step, &same, &fp("a"), LONG_LEASE).await;
    let released = check.release(&same, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
    let token = check
        .expect_fresh(
            &format!("{step}, with another fingerprint"),
            &other,
            &fp("b"),
            LONG_LEASE,
        )
        .await;
    let released = check.release(&other, token).await;
    check.expect_cas("release of the new claim", released, CasOutcome::Applied);
}
