//! What a call is stored under, and the fingerprint of its arguments, which
//! also names its scope.
//!
//! A store that keeps records beyond this process ([`KeyForm::Digest`]) is
//! handed `{scope}:{hex digest of the key}`: bounded, and the same in every
//! process and release. The memory store ([`KeyForm::Local`]) is handed a
//! form that costs no SHA-256 for a short key:
//!
//! `{scope length}:{scope}:{payload}`, the payload being, for a key whose
//! canonical encoding takes at most [`RAW_KEY_MAX`] bytes, `"` and the key
//! itself when it is a string, or that encoding one character per byte (see
//! [`mapped`]) when it is not; and for a longer key `#` and the hex digest.
//!
//! That form is injective: the length frames the scope whatever it holds, a
//! mapped encoding starts with the picture of a tag below `0x20` and so never
//! with `"` or `#`, and a string and the byte-to-character map determine the
//! canonical encoding. Two calls thus share a
//! record exactly when they share the scope and the key's canonical encoding,
//! as with the digest (short of a SHA-256 collision), and the call's
//! [`stored_key`](crate::Call::stored_key) is the digest form either way.

use std::sync::{LazyLock, OnceLock};

use crate::backend::KeyForm;
use crate::canonical::{Sink, STR_TAG};
use crate::fingerprint::new_hasher;
use crate::hasher::Hasher;
use crate::private::HashInto;
use crate::{CodecError, Fingerprint};

/// The longest canonical key kept as it is in a local key; a longer one is
/// digested, so a local key stays bounded too (a UUID string takes 38).
pub(crate) const RAW_KEY_MAX: usize = 64;

/// A call's record: where it is stored and what it is checked against.
#[derive(Debug)]
pub(crate) enum Target {
    Keyed {
        /// The key handed to the store, in the form it asked for.
        key: String,
        fingerprint: Fingerprint,
        /// `{scope}:{hex digest}`, built when first asked for a local key.
        public: Public,
    },
    /// The key's value was `None` (or unit): no record, as an HTTP request
    /// without an `Idempotency-Key`.
    Keyless,
}

/// The digest form of a keyed target's key.
#[derive(Debug)]
pub(crate) enum Public {
    /// The stored key is the digest form.
    Same,
    /// Derived from the local key when first needed.
    Lazy(OnceLock<String>),
}

impl Target {
    /// The target of a call with key `key` and arguments fed by `arguments`,
    /// for a store that takes keys in `form`. `key` `None`: the arguments'
    /// fingerprint is the key.
    pub(crate) fn new(
        scope: &str,
        key: Option<&dyn HashInto>,
        form: KeyForm,
        arguments: impl FnOnce(&mut Hasher) -> Result<(), CodecError>,
    ) -> Result<Self, CodecError> {
        // The scope is part of what a record is checked against, so a record
        // found under this key but written for another scope (a store that
        // mixed up keys) is a mismatch, never a replay.
        let fingerprint = digest(|hasher| {
            scope.hash_into(hasher)?;
            arguments(hasher)
        })?;
        let key = match form {
            KeyForm::Local => {
                let mut local = KeyBytes::new(scope);
                let key = match key {
                    Some(key) => {
                        key.key_into(&mut local)?;
                        if local.is_absent() {
                            return Ok(Self::Keyless);
                        }
                        local.finish()
                    }
                    None => local.finish_with(&fingerprint),
                };
                return Ok(Self::Keyed {
                    key,
                    fingerprint,
                    public: Public::Lazy(OnceLock::new()),
                });
            }
            KeyForm::Digest => match key {
                Some(key) => {
                    let key_digest = digest(|hasher| key.hash_into(hasher))?;
                    if is_absent(&key_digest) {
                        return Ok(Self::Keyless);
                    }
                    key_digest
                }
                None => fingerprint,
            },
        };
        Ok(Self::Keyed {
            key: record_key(scope, &key),
            fingerprint,
            public: Public::Same,
        })
    }

    /// The key in its digest form, whatever the store was handed.
    pub(crate) fn public_key(&self) -> Option<&str> {
        match self {
            Self::Keyed {
                key,
                public: Public::Same,
                ..
            } => Some(key),
            Self::Keyed {
                key,
                public: Public::Lazy(public),
                ..
            } => Some(public.get_or_init(|| {
                // Built here from a well-formed local key, so always found.
                public_form(key).map_or_else(String::new, |(_, public)| public)
            })),
            Self::Keyless => None,
        }
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

/// The canonical encodings of `None` and unit: the keys that are no key.
fn absent_encodings() -> &'static [Vec<u8>; 2] {
    static ABSENT: LazyLock<[Vec<u8>; 2]> = LazyLock::new(|| {
        let of = |value: &dyn HashInto| {
            let mut bytes = Vec::new();
            value.encode_into(&mut bytes).map(|()| bytes)
        };
        [of(&None::<()>), of(&())].map(Result::unwrap_or_default)
    });
    &ABSENT
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

/// A local key being written: the scope's frame, then the key as its
/// canonical encoding comes, kept while it is short and hashed into its
/// digest (exactly as [`KeyForm::Digest`] hashes it) once it is not.
pub struct KeyBytes {
    /// The key so far: the frame, and the string key itself in `Text`.
    key: String,
    /// Where the payload starts in `key`.
    frame: usize,
    payload: Payload,
}

/// What is known of the payload so far.
enum Payload {
    /// Nothing yet.
    Empty,
    /// A string key, written as itself after [`TEXT_MARK`]: as long as
    /// nothing follows it, it is the whole key.
    Text,
    /// A canonical encoding of at most [`RAW_KEY_MAX`] bytes.
    Raw([u8; RAW_KEY_MAX], usize),
    /// The digest of a longer one, being computed.
    Long(Box<Hasher>),
}

impl KeyBytes {
    fn new(scope: &str) -> Self {
        // Room for the frame and a string key or a digest: one allocation.
        let mut key = String::with_capacity(scope.len() + 22 + 65);
        push_decimal(&mut key, scope.len());
        key.push(':');
        key.push_str(scope);
        key.push(':');
        Self {
            frame: key.len(),
            key,
            payload: Payload::Empty,
        }
    }

    /// The key whose payload is `digest` (a call whose arguments are its key).
    fn finish_with(mut self, digest: &Fingerprint) -> String {
        self.key.truncate(self.frame);
        self.key.push(DIGEST_MARK);
        digest.write_hex(&mut self.key);
        self.key
    }

    fn is_absent(&self) -> bool {
        match &self.payload {
            Payload::Raw(bytes, len) => absent_encodings()
                .iter()
                .any(|absent| **absent == bytes[..*len]),
            _ => false,
        }
    }

    fn finish(mut self) -> String {
        match std::mem::replace(&mut self.payload, Payload::Empty) {
            Payload::Empty | Payload::Text => self.key,
            Payload::Raw(bytes, len) => {
                self.key
                    .extend(bytes[..len].iter().map(|&byte| mapped(byte)));
                self.key
            }
            Payload::Long(hasher) => {
                let digest = Fingerprint::from_bytes(hasher.finish());
                self.finish_with(&digest)
            }
        }
    }

    /// Turns a `Text` payload back into its canonical bytes, for a key
    /// that turned out to be more than one string.
    fn untext(&mut self) {
        if let Payload::Text = self.payload {
            let text_at = self.frame + TEXT_MARK.len_utf8();
            let text = &self.key.as_bytes()[text_at..];
            let mut bytes = [0; RAW_KEY_MAX];
            // A text payload is at most `RAW_KEY_MAX - 2` bytes, so its
            // length is one LEB128 byte.
            bytes[0] = STR_TAG;
            bytes[1] = text.len() as u8;
            bytes[2..2 + text.len()].copy_from_slice(text);
            self.payload = Payload::Raw(bytes, 2 + text.len());
            self.key.truncate(self.frame);
        }
    }
}

impl Sink for KeyBytes {
    fn put(&mut self, bytes: &[u8]) {
        self.untext();
        match &mut self.payload {
            Payload::Long(hasher) => hasher.put(bytes),
            Payload::Empty if bytes.len() <= RAW_KEY_MAX => {
                let mut raw = [0; RAW_KEY_MAX];
                raw[..bytes.len()].copy_from_slice(bytes);
                self.payload = Payload::Raw(raw, bytes.len());
            }
            Payload::Raw(raw, len) if *len + bytes.len() <= RAW_KEY_MAX => {
                raw[*len..*len + bytes.len()].copy_from_slice(bytes);
                *len += bytes.len();
            }
            _ => {
                let mut hasher = Box::new(new_hasher());
                if let Payload::Raw(raw, len) = &self.payload {
                    hasher.put(&raw[..*len]);
                }
                hasher.put(bytes);
                self.payload = Payload::Long(hasher);
            }
        }
    }

    fn put_str(&mut self, text: &str) {
        // The common key, one short string, copied as itself: no map and no
        // UTF-8 check, as a `str` is one already.
        if let Payload::Empty = self.payload {
            if text.len() + 2 <= RAW_KEY_MAX {
                self.key.push(TEXT_MARK);
                self.key.push_str(text);
                self.payload = Payload::Text;
                return;
            }
        }
        crate::canonical::put_str_as_bytes(self, text);
    }
}

/// Marks a digest payload; no canonical encoding starts with it, nor does
/// its character map (which starts below `0x20`, so with a picture).
const DIGEST_MARK: char = '#';
/// Marks a string key written as itself.
const TEXT_MARK: char = '"';

fn push_decimal(out: &mut String, value: usize) {
    // Scopes are short: their length takes one or two digits.
    if value < 100 {
        if value >= 10 {
            out.push(char::from(b'0' + (value / 10) as u8));
        }
        out.push(char::from(b'0' + (value % 10) as u8));
        return;
    }
    out.push_str(&value.to_string());
}

/// One character per byte, one-to-one: printable ASCII as itself, the
/// control bytes below `0x20` (every canonical tag) as their Unicode
/// pictures (`0x0a` is `␊`), so a local key reads well in a log, and the
/// rest as the Latin-1 character of that number.
fn mapped(byte: u8) -> char {
    match byte {
        0x00..=0x1f => {
            char::from_u32(0x2400 + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER)
        }
        _ => char::from(byte),
    }
}

/// The byte [`mapped`] maps to `c`, if any.
fn unmapped(c: char) -> Option<u8> {
    match u32::from(c) {
        code @ 0x2400..=0x241f => u8::try_from(code - 0x2400).ok(),
        code @ 0x20..=0xff => u8::try_from(code).ok(),
        _ => None,
    }
}

/// The scope and the digest form (`{scope}:{hex digest}`) of a local key, or
/// `None` when `key` is not one (a key a caller handed the store itself).
pub(crate) fn public_form(key: &str) -> Option<(&str, String)> {
    let (len, rest) = key.split_once(':')?;
    if len.is_empty() || !len.bytes().all(|digit| digit.is_ascii_digit()) {
        return None;
    }
    let len: usize = len.parse().ok()?;
    let scope = rest.get(..len)?;
    let payload = rest.get(len..)?.strip_prefix(':')?;
    let digest = match payload.strip_prefix(DIGEST_MARK) {
        Some(hex) => {
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|digit| matches!(digit, b'0'..=b'9' | b'a'..=b'f'))
            {
                return None;
            }
            return Some((scope, format!("{scope}:{hex}")));
        }
        None if payload.is_empty() => return None,
        None if payload.starts_with(TEXT_MARK) => {
            let text = &payload[TEXT_MARK.len_utf8()..];
            let len = u8::try_from(text.len()).ok().filter(|len| *len < 0x80)?;
            let mut hasher = new_hasher();
            hasher.put(&[STR_TAG, len]);
            hasher.put(text.as_bytes());
            Fingerprint::from_bytes(hasher.finish())
        }
        None => {
            let mut hasher = new_hasher();
            for c in payload.chars() {
                hasher.put(&[unmapped(c)?]);
            }
            Fingerprint::from_bytes(hasher.finish())
        }
    };
    Some((scope, record_key(scope, &digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(
        scope: &str,
        form: KeyForm,
        key: Option<&dyn HashInto>,
        input: &dyn HashInto,
    ) -> (String, Fingerprint, String) {
        let target = Target::new(scope, key, form, |hasher| input.hash_into(hasher)).unwrap();
        let public = target.public_key().map(str::to_owned);
        match target {
            Target::Keyed {
                key, fingerprint, ..
            } => (key, fingerprint, public.unwrap()),
            Target::Keyless => panic!("expected a key"),
        }
    }

    #[test]
    fn none_and_unit_keys_are_no_key() {
        for form in [KeyForm::Digest, KeyForm::Local] {
            for key in [&None::<String> as &dyn HashInto, &(), &None::<u64>] {
                let target = Target::new("s", Some(key), form, |_| Ok(())).unwrap();
                assert!(matches!(target, Target::Keyless), "{form:?} {target:?}");
            }
            for key in [&Some("") as &dyn HashInto, &"", &0u8, &Some(()), &[0u8; 0]] {
                let target = Target::new("s", Some(key), form, |_| Ok(())).unwrap();
                assert!(
                    matches!(target, Target::Keyed { .. }),
                    "{form:?} {target:?}"
                );
            }
        }
    }

    #[test]
    fn the_scope_names_the_key_and_the_fingerprint() {
        let (key_a, fp_a, _) = keyed("a", KeyForm::Digest, Some(&"k"), &1);
        let (key_b, fp_b, _) = keyed("b", KeyForm::Digest, Some(&"k"), &1);
        assert!(key_a.starts_with("a:") && key_b.starts_with("b:"));
        assert_eq!(key_a[2..], key_b[2..], "the key digest is the key's alone");
        assert_ne!(fp_a, fp_b);
        assert_eq!(key_a.len(), 2 + 64);
        let (long_key, _, _) = keyed("a", KeyForm::Digest, Some(&"k".repeat(10_000)), &1);
        assert_eq!(long_key.len(), 2 + 64, "bounded whatever the key's size");
    }

    /// Keys of many shapes, around the raw form's length limit too.
    fn sample_keys() -> Vec<Box<dyn HashInto>> {
        let mut keys: Vec<Box<dyn HashInto>> = vec![
            Box::new("order-42"),
            Box::new(""),
            Box::new(42u64),
            Box::new(-1i64),
            Box::new("42"),
            Box::new(b"bytes".to_vec()),
            Box::new(("a", "bc")),
            Box::new(("ab", "c")),
            Box::new(Some("x")),
            Box::new("\u{240a}#:\n\u{0}é"),
            Box::new(1.5f64),
        ];
        // A string's canonical encoding is its length and two bytes more.
        for len in [60, 61, 62, 63, 64, 65, 200, 10_000] {
            keys.push(Box::new("k".repeat(len)));
        }
        keys
    }

    #[test]
    fn a_local_key_has_the_digest_form_as_its_stored_key() {
        for key in sample_keys() {
            for scope in ["s", "", "a:b", "12:x", "ünïcödé", &"long".repeat(40)] {
                let (digest_key, digest_fp, digest_public) =
                    keyed(scope, KeyForm::Digest, Some(&*key), &7);
                let (local_key, local_fp, local_public) =
                    keyed(scope, KeyForm::Local, Some(&*key), &7);
                assert_eq!(digest_public, digest_key);
                assert_eq!(
                    local_public, digest_key,
                    "scope {scope:?}, key {local_key:?}"
                );
                assert_eq!(
                    local_fp, digest_fp,
                    "the fingerprint does not depend on the form"
                );
                assert!(local_key.len() <= scope.len() + 20 + 2 * RAW_KEY_MAX + 2 * 3);
            }
        }
        let (_, _, unkeyed_digest) = keyed("s", KeyForm::Digest, None, &("a", 1));
        let (local, _, unkeyed_local) = keyed("s", KeyForm::Local, None, &("a", 1));
        assert_eq!(unkeyed_local, unkeyed_digest);
        assert!(local.starts_with("1:s:#"), "{local}");
        let (text, _, _) = keyed("bench::charge", KeyForm::Local, Some(&"order-42"), &());
        assert_eq!(
            text, "13:bench::charge:\"order-42",
            "a string key as itself"
        );
    }

    #[test]
    fn local_keys_of_different_scopes_or_keys_never_coincide() {
        // Pairs that a plain `{scope}:{key}` would run together, or that
        // differ only at the raw form's length limit.
        let mut seen = std::collections::HashMap::new();
        let scopes = [
            "a",
            "a:",
            "a:1",
            ":",
            "",
            "1",
            "1:a",
            "2:a:",
            "a:\u{240a}",
            "a#",
        ];
        let mut keys = sample_keys();
        keys.extend([
            Box::new(":1") as Box<dyn HashInto>,
            Box::new("1"),
            Box::new(":"),
            Box::new("a:1"),
            Box::new(format!("#{}", "0".repeat(64))),
            Box::new("\"x"),
            Box::new(b"\x0a\x01x".to_vec()),
            Box::new(Some("x".repeat(61))),
            Box::new(Some("x".repeat(62))),
        ]);
        for scope in scopes {
            for (index, key) in keys.iter().enumerate() {
                let (local, _, _) = keyed(scope, KeyForm::Local, Some(&**key), &());
                if let Some(other) = seen.insert(local.clone(), (scope, index)) {
                    panic!(
                        "{other:?} and {:?} share the local key {local:?}",
                        (scope, index)
                    );
                }
            }
        }
        assert_eq!(seen.len(), scopes.len() * keys.len());
    }

    #[test]
    fn the_byte_map_is_one_to_one() {
        let mut chars = std::collections::HashSet::new();
        for byte in 0..=255u8 {
            let c = mapped(byte);
            assert_eq!(unmapped(c), Some(byte), "{byte:#04x}");
            assert!(
                !c.is_control() || byte >= 0x7f,
                "{byte:#04x} maps to a control"
            );
            assert!(chars.insert(c));
        }
        assert_ne!(mapped(0x0a), DIGEST_MARK);
        assert_eq!(public_form("k"), None);
        assert_eq!(public_form("s:digest"), None);
        assert_eq!(public_form("9:s:x"), None);
    }
}
