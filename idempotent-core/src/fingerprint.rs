//! SHA-256 digests of canonically serialized values: fingerprints and keys.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::CodecError;

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
        Ok(Self(hasher.finalize().into()))
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        // Every byte is an ASCII hex digit, so the conversion cannot fail.
        out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    }
}

/// Every digest starts from this domain tag. It names the canonical encoding's
/// version, so a future encoding gives new digests on purpose, never by
/// accident, and digests of other tools can never coincide with ours. It is
/// 8 bytes so that a key of up to 50 bytes still hashes in one SHA-256 block.
/// Version 2: a call's fingerprint also covers its scope, so records of
/// version 1 are left alone (other keys) rather than mismatched.
const DOMAIN: &[u8] = b"idem/v2\0";

/// A SHA-256 hasher primed with the domain tag.
pub(crate) fn new_hasher() -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher
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
