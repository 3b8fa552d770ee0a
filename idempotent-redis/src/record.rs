//! How a record is stored: one Redis string with a fixed-width header.
//!
//! | bytes | what |
//! | --- | --- |
//! | 0..5 | `idem1`: the format's name and version |
//! | 5 | the state: `P` in progress, `C` completed |
//! | 6..38 | the fingerprint, 32 raw bytes |
//! | 38..54 | the fencing token, 16 lowercase hex digits |
//! | 54.. | `P`: the lease in decimal milliseconds; `C`: the output |
//!
//! A string, not a hash, so that a claim can be one plain
//! `SET key claim NX GET PX 2*lease`: it writes the claim when the key is
//! absent and otherwise returns the record unchanged, which is how a replay
//! costs one command and no Lua. A completed record never changes, so the
//! client may decide on it alone; only a record in progress goes on to the
//! claim script, which decides atomically with the lease.
//!
//! No time is stored: a claim's key expires two leases after it was claimed
//! or renewed, so the lease ends one lease before the key does
//! (`PTTL - lease`), by the server's clock. The Lua scripts read the same
//! offsets (`scripts.rs`).

use idempotent_core::backend::{FencingToken, Fingerprint};

/// The format's name and version, the first bytes of every record.
pub(crate) const MAGIC: &[u8] = b"idem1";
/// The state byte of a record in progress.
pub(crate) const IN_PROGRESS: u8 = b'P';
/// The state byte of a completed record.
pub(crate) const COMPLETED: u8 = b'C';
/// Where the state byte is.
pub(crate) const STATE_AT: usize = MAGIC.len();
const FINGERPRINT_AT: usize = STATE_AT + 1;
const TOKEN_AT: usize = FINGERPRINT_AT + 32;
/// The header's length; the lease or the output follows it.
pub(crate) const HEADER_LEN: usize = TOKEN_AT + 16;

/// A token as the records and the scripts spell it: 16 lowercase hex digits,
/// compared as strings in Lua, whose numbers cannot hold 64 bits.
pub(crate) fn token_hex(token: FencingToken) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let value = token.get();
    let mut hex = [0; 16];
    for (index, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[((value >> (60 - 4 * index)) & 0xf) as usize];
    }
    hex
}

/// The record of a new claim.
pub(crate) fn claim(fingerprint: &Fingerprint, token: FencingToken, lease_ms: u64) -> Vec<u8> {
    let (digits, len) = decimal(lease_ms);
    let mut record = Vec::with_capacity(HEADER_LEN + len);
    record.extend_from_slice(MAGIC);
    record.push(IN_PROGRESS);
    record.extend_from_slice(fingerprint.as_bytes());
    record.extend_from_slice(&token_hex(token));
    record.extend_from_slice(&digits[digits.len() - len..]);
    record
}

/// `value`'s decimal digits, right-aligned in 20 bytes (enough for any
/// `u64`), and how many there are. Every claim writes its lease so; the
/// formatting machinery of `write!` cost more than the rest of the record.
fn decimal(mut value: u64) -> ([u8; 20], usize) {
    let mut digits = [0; 20];
    let mut len = 0;
    loop {
        len += 1;
        digits[digits.len() - len] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return (digits, len);
        }
    }
}

/// What a claim found at a key that held a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Completed with the same fingerprint: its output.
    Completed(Vec<u8>),
    /// In progress with the same fingerprint: whether its lease is live is
    /// for the claim script to decide.
    InProgress,
    /// In progress with the caller's own token: this very claim, sent again.
    Mine,
    /// Another fingerprint, in any state.
    Mismatch,
}

/// Reads a record found at claim time; `Err` says why it is not a record
/// this crate wrote.
pub(crate) fn read(
    mut record: Vec<u8>,
    fingerprint: &Fingerprint,
    token: FencingToken,
) -> Result<Found, String> {
    if record.len() < HEADER_LEN || !record.starts_with(&MAGIC[..MAGIC.len() - 1]) {
        return Err("the value at this key is not an idempotency record".to_owned());
    }
    if record[MAGIC.len() - 1] != MAGIC[MAGIC.len() - 1] {
        return Err(format!(
            "unknown record version {:?}",
            char::from(record[MAGIC.len() - 1])
        ));
    }
    let state = record[STATE_AT];
    if state != IN_PROGRESS && state != COMPLETED {
        return Err(format!("unknown record state {:?}", char::from(state)));
    }
    if record[FINGERPRINT_AT..TOKEN_AT] != fingerprint.as_bytes()[..] {
        return Ok(Found::Mismatch);
    }
    if state == IN_PROGRESS {
        if record[TOKEN_AT..HEADER_LEN] == token_hex(token) {
            return Ok(Found::Mine);
        }
        return Ok(Found::InProgress);
    }
    // Shifting the output down reuses the reply's buffer: no allocation.
    record.drain(..HEADER_LEN);
    Ok(Found::Completed(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token of no claim in these tests.
    const OTHER: FencingToken = FencingToken::new(0xdead);

    fn fingerprint(byte: u8) -> Fingerprint {
        Fingerprint::from_bytes([byte; 32])
    }

    fn completed(fingerprint: &Fingerprint, output: &[u8]) -> Vec<u8> {
        let mut record = claim(fingerprint, FencingToken::new(7), 1000);
        record.truncate(HEADER_LEN);
        record[STATE_AT] = COMPLETED;
        record.extend_from_slice(output);
        record
    }

    #[test]
    fn a_claim_record_has_the_documented_layout() {
        let record = claim(
            &fingerprint(0xab),
            FencingToken::new(0x0123_4567_89ab_cdef),
            30_000,
        );
        assert_eq!(&record[..6], b"idem1P");
        assert_eq!(&record[6..38], &[0xab; 32]);
        assert_eq!(&record[38..54], b"0123456789abcdef");
        assert_eq!(&record[54..], b"30000");
    }

    #[test]
    fn leases_are_written_in_decimal() {
        for lease in [0, 1, 9, 10, 999, 30_000, 86_400_000, u64::MAX] {
            let record = claim(&fingerprint(1), FencingToken::new(2), lease);
            assert_eq!(
                record[HEADER_LEN..],
                *lease.to_string().as_bytes(),
                "{lease}"
            );
        }
    }

    #[test]
    fn tokens_are_sixteen_hex_digits() {
        assert_eq!(&token_hex(FencingToken::new(0)), b"0000000000000000");
        assert_eq!(&token_hex(FencingToken::new(u64::MAX)), b"ffffffffffffffff");
        assert_eq!(&token_hex(FencingToken::new(0xa)), b"000000000000000a");
    }

    #[test]
    fn a_completed_record_gives_its_output() {
        let mine = fingerprint(1);
        assert_eq!(
            read(completed(&mine, b"{\"ok\":1}"), &mine, OTHER),
            Ok(Found::Completed(b"{\"ok\":1}".to_vec()))
        );
        assert_eq!(
            read(completed(&mine, b""), &mine, OTHER),
            Ok(Found::Completed(Vec::new()))
        );
    }

    #[test]
    fn another_fingerprint_is_a_mismatch_in_either_state() {
        let (mine, theirs) = (fingerprint(1), fingerprint(2));
        assert_eq!(
            read(completed(&theirs, b"x"), &mine, OTHER),
            Ok(Found::Mismatch)
        );
        let claimed = claim(&theirs, FencingToken::new(1), 10);
        assert_eq!(read(claimed, &mine, OTHER), Ok(Found::Mismatch));
    }

    #[test]
    fn a_claim_in_progress_is_left_to_the_script_unless_it_is_mine() {
        let mine = fingerprint(1);
        let claimed = claim(&mine, FencingToken::new(1), 10);
        assert_eq!(read(claimed.clone(), &mine, OTHER), Ok(Found::InProgress));
        let sent_twice = read(claimed, &mine, FencingToken::new(1));
        assert_eq!(sent_twice, Ok(Found::Mine));
    }

    #[test]
    fn foreign_truncated_and_future_values_are_refused() {
        let mine = fingerprint(1);
        let whole = completed(&mine, b"output");
        for (value, reason) in [
            (b"hello".to_vec(), "not an idempotency record"),
            (
                whole[..HEADER_LEN - 1].to_vec(),
                "not an idempotency record",
            ),
            (Vec::new(), "not an idempotency record"),
            (
                [b"idem2".as_slice(), &whole[5..]].concat(),
                "unknown record version '2'",
            ),
            (
                [b"idem1X".as_slice(), &whole[6..]].concat(),
                "unknown record state 'X'",
            ),
        ] {
            let error = read(value, &mine, OTHER).unwrap_err();
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        }
    }
}
