//! Keys: whatever their shape, distinct keys are distinct records.

use idempotent_core::backend::{Backend, CasOutcome};

use crate::check::{fp, Check};
use crate::timing::{LONG_LEASE, TTL};

/// Keys of the runtime's shape (`{scope}:{64 hex digits}`, with a scope of
/// 200 characters), keys with `:`, unicode, spaces, braces, glob, SQL and
/// quote characters, and look-alike keys (prefixes of each other, differing
/// only in case or trailing space) all work and are distinct records.
pub async fn unusual_keys_work_and_are_independent<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("unusual_keys_work_and_are_independent", backend);
    let hex = "0123456789abcdef".repeat(4);
    let other_hex = "fedcba9876543210".repeat(4);
    let names = [
        // Same long scope, digests differing in every digit: a store that
        // truncates or hashes keys badly merges them.
        format!("{}:{hex}", "s".repeat(200)),
        format!("{}:{other_hex}", "s".repeat(200)),
        format!("my_app::payments::charge_card:{hex}"),
        format!("zahlung::überweisung::支払い::🦀:{hex}"),
        "a:b:c::d:".to_owned(),
        "k".to_owned(),
        "k:".to_owned(),
        "k:k".to_owned(),
        "Key".to_owned(),
        "key".to_owned(),
        "key ".to_owned(),
        " key".to_owned(),
        "{tag}*?[x]".to_owned(),
        "{tag}".to_owned(),
        "100%_'\";--\\".to_owned(),
    ];
    let keys: Vec<String> = names.iter().map(|name| check.key(name)).collect();
    let mut tokens = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let step = format!("claim of the absent key {key:?} (fingerprint #{i})");
        tokens.push(
            check
                .expect_fresh(&step, key, &fp(&i.to_string()), LONG_LEASE)
                .await,
        );
    }
    for (i, (key, token)) in keys.iter().zip(&tokens).enumerate() {
        let completed = check
            .complete(key, *token, format!("output #{i}").as_bytes(), TTL)
            .await;
        check.expect_cas(
            &format!("complete of {key:?}"),
            completed,
            CasOutcome::Applied,
        );
    }
    for (i, key) in keys.iter().enumerate() {
        check
            .expect_completed(
                &format!("replay of {key:?} (its own output)"),
                key,
                &fp(&i.to_string()),
                format!("output #{i}").as_bytes(),
            )
            .await;
    }
}

/// Operations on one key never affect another, even with the same
/// fingerprint: claims, completes and releases of `k1` leave `k2` and `k3`
/// as they were.
pub async fn distinct_keys_are_independent<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("distinct_keys_are_independent", backend);
    let (k1, k2, k3) = (check.key("k1"), check.key("k2"), check.key("k3"));
    let (a, b) = (fp("a"), fp("b"));
    let t1 = check.expect_fresh("claim of k1", &k1, &a, LONG_LEASE).await;
    let t2 = check
        .expect_fresh(
            "claim of k2, same fingerprint, while k1 is held",
            &k2,
            &a,
            LONG_LEASE,
        )
        .await;
    check
        .expect_fresh(
            "claim of k3, another fingerprint, while k1 is held",
            &k3,
            &b,
            LONG_LEASE,
        )
        .await;
    let completed = check.complete(&k1, t1, b"one", TTL).await;
    check.expect_cas("complete of k1", completed, CasOutcome::Applied);
    check
        .expect_in_progress("claim of k2 after k1 completed", &k2, &a, LONG_LEASE)
        .await;
    check
        .expect_in_progress("claim of k3 after k1 completed", &k3, &b, LONG_LEASE)
        .await;
    let released = check.release(&k2, t2).await;
    check.expect_cas("release of k2", released, CasOutcome::Applied);
    check
        .expect_completed("replay of k1 after k2 was released", &k1, &a, b"one")
        .await;
    check
        .expect_in_progress("claim of k3 after k2 was released", &k3, &b, LONG_LEASE)
        .await;
    let t2 = check
        .expect_fresh("claim of k2 after its release", &k2, &b, LONG_LEASE)
        .await;
    let completed = check.complete(&k2, t2, b"two", TTL).await;
    check.expect_cas("complete of k2", completed, CasOutcome::Applied);
    check
        .expect_completed("replay of k1 after k2 completed", &k1, &a, b"one")
        .await;
    check
        .expect_completed("replay of k2", &k2, &b, b"two")
        .await;
}
