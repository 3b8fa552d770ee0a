//! What a call is stored under: `{scope}:{hex digest of the key}`, and the
//! fingerprint of its arguments, which also names its scope.

use std::sync::LazyLock;

use crate::fingerprint::new_hasher;
use crate::hasher::Hasher;
use crate::private::HashInto;
use crate::{CodecError, Fingerprint};

/// A call's record: where it is stored and what it is checked against.
#[derive(Debug)]
pub(crate) enum Target {
    Keyed {
        /// `{scope}:{hex digest}`: bounded by the scope, whatever the key's size.
        key: String,
        fingerprint: Fingerprint,
    },
    /// The key's value was `None` (or unit): no record, as an HTTP request
    /// without an `Idempotency-Key`.
    Keyless,
}

impl Target {
    /// The target of a call with key `key` and arguments fed by `arguments`.
    /// `key` `None`: the arguments' fingerprint is the key.
    pub(crate) fn new(
        scope: &str,
        key: Option<&dyn HashInto>,
        arguments: impl FnOnce(&mut Hasher) -> Result<(), CodecError>,
    ) -> Result<Self, CodecError> {
        // The scope is part of what a record is checked against, so a record
        // found under this key but written for another scope (a store that
        // mixed up keys) is a mismatch, never a replay.
        let fingerprint = digest(|hasher| {
            scope.hash_into(hasher)?;
            arguments(hasher)
        })?;
        let key_digest = match key {
            Some(key) => {
                let key_digest = digest(|hasher| key.hash_into(hasher))?;
                if is_absent(&key_digest) {
                    return Ok(Self::Keyless);
                }
                key_digest
            }
            None => fingerprint,
        };
        Ok(Self::Keyed {
            key: record_key(scope, &key_digest),
            fingerprint,
        })
    }
}

/// Whether a key digest is that of a value serialized as `None` or unit:
/// compared by digest, so a present key costs no second look at its value.
fn is_absent(key_digest: &Fingerprint) -> bool {
    static ABSENT: LazyLock<[Fingerprint; 2]> = LazyLock::new(|| {
        let of = |value: &dyn HashInto| digest(|hasher| value.hash_into(hasher));
        [of(&None::<()>), of(&())].map(|digest| digest.unwrap_or(Fingerprint::from_bytes([0; 32])))
    });
    ABSENT.contains(key_digest)
}

fn digest(
    feed: impl FnOnce(&mut Hasher) -> Result<(), CodecError>,
) -> Result<Fingerprint, CodecError> {
    let mut hasher = new_hasher();
    feed(&mut hasher)?;
    Ok(Fingerprint::from_bytes(hasher.finish()))
}

fn record_key(scope: &str, digest: &Fingerprint) -> String {
    let mut key = String::with_capacity(scope.len() + 65);
    key.push_str(scope);
    key.push(':');
    digest.write_hex(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(scope: &str, key: &dyn HashInto, input: &dyn HashInto) -> (String, Fingerprint) {
        match Target::new(scope, Some(key), |hasher| input.hash_into(hasher)).unwrap() {
            Target::Keyed { key, fingerprint } => (key, fingerprint),
            Target::Keyless => panic!("expected a key"),
        }
    }

    #[test]
    fn none_and_unit_keys_are_no_key() {
        for key in [&None::<String> as &dyn HashInto, &(), &None::<u64>] {
            let target = Target::new("s", Some(key), |_| Ok(())).unwrap();
            assert!(matches!(target, Target::Keyless), "{target:?}");
        }
        for key in [&Some("") as &dyn HashInto, &"", &0u8, &Some(())] {
            let target = Target::new("s", Some(key), |_| Ok(())).unwrap();
            assert!(matches!(target, Target::Keyed { .. }), "{target:?}");
        }
    }

    #[test]
    fn the_scope_names_the_key_and_the_fingerprint() {
        let (key_a, fp_a) = keyed("a", &"k", &1);
        let (key_b, fp_b) = keyed("b", &"k", &1);
        assert!(key_a.starts_with("a:") && key_b.starts_with("b:"));
        assert_eq!(key_a[2..], key_b[2..], "the key digest is the key's alone");
        assert_ne!(fp_a, fp_b);
        assert_eq!(key_a.len(), 2 + 64);
        let (long_key, _) = keyed("a", &"k".repeat(10_000), &1);
        assert_eq!(long_key.len(), 2 + 64, "bounded whatever the key's size");
    }
}
