//! Stored outputs: any bytes, large or empty, round-trip; the store's size
//! limit refuses what is over it and still takes the runtime's not-stored
//! marker.

use idempotent_core::backend::{Backend, BackendErrorKind, CasOutcome};

use crate::check::{fp, Check};
use crate::timing::{LONG_LEASE, TTL};

/// Outputs are bytes, not text: all 256 byte values, embedded and trailing
/// NULs, invalid UTF-8 and protocol-like bytes each round-trip byte-exact.
pub async fn outputs_are_binary_safe<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("outputs_are_binary_safe", backend);
    let every_byte: Vec<u8> = (0..=255).collect();
    let every_byte_reversed: Vec<u8> = (0..=255).rev().collect();
    let cases: [(&str, &[u8]); 9] = [
        ("every-byte", &every_byte),
        ("every-byte-reversed", &every_byte_reversed),
        ("nul", b"\0"),
        ("embedded-nuls", b"a\0b\0\0c"),
        ("trailing-nuls", b"abc\0\0"),
        ("invalid-utf8", b"\xff\xfe\x80\xc0\xaf\xed\xa0\x80"),
        ("protocol-like", b"$-1\r\n*0\r\n:1\r\n+OK\r\n"),
        ("quotes-and-escapes", b"'\"\\%_\n\t"),
        ("high-bytes", &[0x80; 64]),
    ];
    for (name, output) in cases {
        check.round_trip(name, output).await;
    }
}

/// A 512 KiB output round-trips byte-exact (fixtures must accept at least
/// 1 MiB).
pub async fn large_output_round_trips<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("large_output_round_trips", backend);
    // A pattern that does not repeat with any power-of-two period, so a
    // truncated, shifted or chunk-swapped copy is caught.
    let output: Vec<u8> = (0..512 * 1024u32)
        .map(|i| (i.wrapping_mul(7) % 251) as u8 ^ (i >> 13) as u8)
        .collect();
    check.round_trip("large", &output).await;
}

/// An empty output round-trips as `Completed { output: [] }`, and is a record
/// (another fingerprint is `Mismatch`), not an absent key.
pub async fn empty_output_round_trips<B: Backend + ?Sized>(backend: &B) {
    let check = Check::new("empty_output_round_trips", backend);
    check.round_trip("empty", b"").await;
    let key = check.key("empty");
    check
        .expect_mismatch(
            "claim of the key completed with an empty output, with another fingerprint",
            &key,
            &fp("b"),
        )
        .await;
    check
        .expect_completed("replay of the empty output, again", &key, &fp("a"), b"")
        .await;
}

/// The marker the runtime stores for a body whose result could not be
/// stored ([`stored_result::NOT_STORED_LEN`](idempotent_core::backend::stored_result::NOT_STORED_LEN)
/// bytes) is accepted by a store configured with its smallest output limit
/// (`limit`, which must be at least
/// [`MIN_OUTPUT_LIMIT`](idempotent_core::limits::MIN_OUTPUT_LIMIT)): the key then
/// records that the body ran, so a retry never runs it again.
///
/// Like [`output_over_the_limit_is_too_large`], call it by hand on a store
/// configured with the smallest limit it allows.
pub async fn not_stored_marker_fits_the_smallest_limit<B: Backend + ?Sized>(
    backend: &B,
    limit: usize,
) {
    let check = Check::new("not_stored_marker_fits_the_smallest_limit", backend);
    if limit < idempotent_core::limits::MIN_OUTPUT_LIMIT {
        check.fail(
            "the store's smallest output limit",
            &format!(
                "at least {} bytes",
                idempotent_core::limits::MIN_OUTPUT_LIMIT
            ),
            limit,
        );
    }
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let marker = idempotent_core::backend::stored_result::not_stored_marker();
    let completed = check.complete(&key, token, &marker, TTL).await;
    check.expect_cas("complete with the marker", completed, CasOutcome::Applied);
    check
        .expect_completed("replay of the marker", &key, &a, &marker)
        .await;
}

/// An output longer than the store's limit fails with
/// [`BackendErrorKind::TooLarge`] and changes nothing (the claim is still in
/// progress, its holder may complete with a smaller output); an output of
/// exactly `limit` bytes is stored.
///
/// `limit` is the largest output `backend` accepts, so this check is not part
/// of [`conformance_tests!`](crate::conformance_tests): call it on a store
/// configured with a small limit (see [`run`](crate::run) for an example).
pub async fn output_over_the_limit_is_too_large<B: Backend + ?Sized>(backend: &B, limit: usize) {
    let check = Check::new("output_over_the_limit_is_too_large", backend);
    let key = check.key("k");
    let a = fp("a");
    let token = check
        .expect_fresh("claim of an absent key", &key, &a, LONG_LEASE)
        .await;
    let too_large = vec![b'x'; limit + 1];
    let step = format!(
        "complete with {} bytes, over the limit of {limit}",
        limit + 1
    );
    match backend.complete(&key, token, &too_large, TTL).await {
        Err(error) if error.kind() == BackendErrorKind::TooLarge => {}
        Err(error) => check.fail(
            &step,
            "Err with kind TooLarge",
            format_args!("Err({error}) of kind {:?}", error.kind()),
        ),
        Ok(outcome) => check.fail(&step, "Err with kind TooLarge", outcome),
    }
    check
        .expect_in_progress("claim after the failed complete", &key, &a, LONG_LEASE)
        .await;
    let at_limit = vec![b'y'; limit];
    let completed = check.complete(&key, token, &at_limit, TTL).await;
    check.expect_cas(
        &format!("complete with exactly the limit of {limit} bytes"),
        completed,
        CasOutcome::Applied,
    );
    check
        .expect_completed("replay of the output at the limit", &key, &a, &at_limit)
        .await;
}
