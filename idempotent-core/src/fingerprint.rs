//! SHA-256 digests of canonically serialized values: fingerprints and keys.

use std::fmt;

use crate::canonical;
use crate::hasher::Hasher;
use crate::CodecError;
use serde::Serialize;

/// The SHA-256 digest of a value's canonical serialization.
///
/// Canonical means that equal values give equal digests whatever their
/// in-memory layout: map entries are hashed in sorted order (a `HashMap` built
/// in another order has the same fingerprint), and every value is tagged and
/// length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `value`.
    ///
    /// Fails only when `value`'s `Serialize` implementation itself fails.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, CodecError> {
        let mut hasher = new_hasher();
        canonical::write(value, &mut hasher)?;
        Ok(Self(hasher.finish()))
    }

    /// A fingerprint read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's 32 bytes, for stores that keep it.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Appends the digest as 64 lowercase hex digits.
    pub(crate) fn write_hex(&self, out: &mut String) {
        // Word-aligned, so the UTF-8 check below takes its word-at-a-time
        // path from the first byte.
        #[repr(align(16))]
        struct Digits([u8; 64]);
        let Digits(hex) = &mut Digits([0; 64]);
        for (digits, bytes) in hex.chunks_exact_mut(16).zip(self.0.chunks_exact(8)) {
            let mut word = [0; 8];
            word.copy_from_slice(bytes);
            digits.copy_from_slice(&hex_digits(u64::from_be_bytes(word)));
        }
        // Every byte is an ASCII hex digit, so the conversion cannot fail.
        out.push_str(std::str::from_utf8(hex).unwrap_or_default());
    }
}

/// The 16 lowercase hex digits of `value`, most significant first. Computed
/// on all nibbles at once rather than by a table lookup per nibble: every
/// stored key carries a digest in hex, so this runs on every call.
fn hex_digits(value: u64) -> [u8; 16] {
    const LOW_NIBBLES: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    // Spread the 16 nibbles over 16 bytes, one nibble in the low half of
    // each, keeping their order.
    let mut spread = u128::from(value);
    spread = (spread & 0xffff_ffff_0000_0000) << 32 | (spread & 0xffff_ffff);
    spread = (spread & 0x0000_0000_ffff_0000_0000_0000_ffff_0000) << 16
        | (spread & 0x0000_0000_0000_ffff_0000_0000_0000_ffff);
    spread = (spread & 0x0000_ff00_0000_ff00_0000_ff00_0000_ff00) << 8
        | (spread & 0x0000_00ff_0000_00ff_0000_00ff_0000_00ff);
    spread = (spread & 0x00f0_00f0_00f0_00f0_00f0_00f0_00f0_00f0) << 4
        | (spread & 0x000f_000f_000f_000f_000f_000f_000f_000f);
    let nibbles = spread & LOW_NIBBLES;
    // A byte holding 10..=15 gets bit 4 set by adding 6: those become
    // letters, `'a' - '0' - 10` = 39 further up.
    let letters = ((nibbles + 6 * ONES) >> 4) & ONES;
    (nibbles + u128::from(b'0') * ONES + letters * 39).to_be_bytes()
}

/// Every digest starts from this domain tag. It names the canonical encoding's
/// version, so a future encoding gives new digests on purpose, never by
/// accident, and digests of other tools can never coincide with ours. It is
/// 8 bytes so that a key of up to 50 bytes still hashes in one SHA-256 block.
/// Version 2: a call's fingerprint also covers its scope, so records of
/// version 1 are left alone (other keys) rather than mismatched.
const DOMAIN: [u8; 8] = *b"idem/v2\0";

/// A SHA-256 hasher primed with the domain tag.
pub(crate) fn new_hasher() -> Hasher {
    const PRIMED: Hasher = Hasher::starting_with(DOMAIN);
    PRIMED
}

impl fmt::Display for Fingerprint {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = String::with_capacity(64);
        self.write_hex(&mut hex);
        f.write_str(&hex)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_per_byte_in_order() {
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37) ^ 0xa5;
        }
        for digest in [
            [0u8; 32],
            [0xff; 32],
            bytes,
            std::array::from_fn(|i| i as u8 * 8),
        ] {
            let expected: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(Fingerprint::from_bytes(digest).to_string(), expected);
        }
        for value in 0..=255u8 {
            let expected: String = [value; 32].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(Fingerprint::from_bytes([value; 32]).to_string(), expected);
        }
    }
}
