//! The versioned encoding of a stored result.
//!
//! A record's output is `[version, tag, payload..]`: the tag tells an `Ok`
//! value from a cached `Err` and from a marker saying the body ran but its
//! result could not be stored. The version lets a future encoding coexist with
//! records written by this one.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::CodecError;

const VERSION: u8 = 1;
const OK: u8 = b'O';
const ERR: u8 = b'E';
const NOT_STORED: u8 = b'N';

/// A decoded envelope, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    Ok(&'a [u8]),
    Err(&'a [u8]),
    NotStored(&'a str),
}

/// What a not-stored marker says: its reason code, or the free text the
/// markers of earlier builds carried.
fn lost_reason(reason: &[u8]) -> &str {
    match reason {
        [code] => NotStored::from_code(*code).map_or("reason unknown", NotStored::describe),
        text => std::str::from_utf8(text).unwrap_or("reason not readable"),
    }
}

pub(crate) fn encode_ok<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    encode(OK, value)
}

pub(crate) fn encode_err<E: Serialize + ?Sized>(error: &E) -> Result<Vec<u8>, serde_json::Error> {
    encode(ERR, error)
}

/// Why a body's result could not be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotStored {
    TooLarge,
    Unserializable,
}

impl NotStored {
    const fn code(self) -> u8 {
        match self {
            Self::TooLarge => b'L',
            Self::Unserializable => b'S',
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        [Self::TooLarge, Self::Unserializable]
            .into_iter()
            .find(|reason| reason.code() == code)
    }

    pub(crate) const fn describe(self) -> &'static str {
        match self {
            Self::TooLarge => "the result was too large for the store",
            Self::Unserializable => "the result failed to serialize",
        }
    }
}

/// The length of every not-stored marker: a store whose output limit is at
/// least this accepts it, whatever refused the result itself.
pub(crate) const NOT_STORED_LEN: usize = 3;

/// The marker of a body that ran but whose result could not be stored: three
/// bytes whatever the reason, so it fits where the result did not. The
/// reason's wording lives in this build, not in the record.
pub(crate) fn encode_not_stored(reason: NotStored) -> [u8; NOT_STORED_LEN] {
    [VERSION, NOT_STORED, reason.code()]
}

fn encode<T: Serialize + ?Sized>(tag: u8, value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&[VERSION, tag]);
    serde_json::to_writer(&mut bytes, value)?;
    Ok(bytes)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, CodecError> {
    match bytes {
        [VERSION, OK, payload @ ..] => Ok(Decoded::Ok(payload)),
        [VERSION, ERR, payload @ ..] => Ok(Decoded::Err(payload)),
        [VERSION, NOT_STORED, reason @ ..] => Ok(Decoded::NotStored(lost_reason(reason))),
        [version, ..] if *version != VERSION => Err(CodecError::new(format!(
            "the stored result has encoding version {version}, this build reads version {VERSION}"
        ))),
        _ => Err(CodecError::new("the stored result is not a valid record")),
    }
}

pub(crate) fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(payload).map_err(|error| {
        CodecError::new(format!(
            "the stored result cannot be decoded as `{}` (did the type change since it was stored?)",
            std::any::type_name::<T>()
        ))
        .with_source(error)
    })
}

/// The format of a stored result, for stores that complete records outside
/// the runtime (the Postgres store's transactional mode) and must stay
/// readable by it, and read its records back.
pub mod stored_result {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::{Decoded, NotStored};
    use crate::Error;

    /// The length of a not-stored marker, whatever its reason: every store
    /// accepts outputs this long ([`MIN_OUTPUT_LIMIT`](crate::limits::MIN_OUTPUT_LIMIT)).
    pub const NOT_STORED_LEN: usize = super::NOT_STORED_LEN;

    /// A not-stored marker, as the runtime stores it for a body whose
    /// result was too large for the store.
    pub fn not_stored_marker() -> [u8; NOT_STORED_LEN] {
        super::encode_not_stored(NotStored::TooLarge)
    }

    /// Encodes an `Ok` value as the runtime stores it.
    pub fn encode_ok<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
        super::encode_ok(value)
    }

    /// The stored `Ok` value, or why there is none: [`Error::Codec`] for a
    /// record that does not decode as `T` or holds a cached `Err` (which the
    /// caller does not replay), [`Error::ResultNotStored`] for the marker of
    /// a body whose result could not be stored.
    pub fn decode_ok<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        match super::decode(bytes).map_err(Error::Codec)? {
            Decoded::Ok(payload) => super::decode_payload(payload).map_err(Error::Codec),
            Decoded::Err(_) => Err(Error::Codec(crate::CodecError::new(
                "the stored record holds a cached error (`cache_err`), which this call does \
                 not replay",
            ))),
            Decoded::NotStored(reason) => Err(Error::ResultNotStored {
                reason: reason.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_kind() {
        let ok = encode_ok(&vec![1, 2]).unwrap();
        assert_eq!(decode(&ok).unwrap(), Decoded::Ok(b"[1,2]"));
        let err = encode_err("declined").unwrap();
        assert_eq!(decode(&err).unwrap(), Decoded::Err(b"\"declined\""));
        for reason in [NotStored::TooLarge, NotStored::Unserializable] {
            let marker = encode_not_stored(reason);
            assert_eq!(marker.len(), NOT_STORED_LEN);
            assert_eq!(
                decode(&marker).unwrap(),
                Decoded::NotStored(reason.describe())
            );
        }
        // Markers of earlier builds carried their reason as text.
        assert_eq!(
            decode(b"\x01Ntoo large").unwrap(),
            Decoded::NotStored("too large")
        );
        assert_eq!(
            decode(b"\x01N?").unwrap(),
            Decoded::NotStored("reason unknown")
        );
    }

    #[test]
    fn rejects_foreign_and_future_records() {
        assert!(decode(b"").is_err());
        assert!(decode(&[VERSION]).is_err());
        assert!(decode(&[VERSION, b'?']).is_err());
        let future = decode(&[VERSION + 1, OK]).unwrap_err().to_string();
        assert!(future.contains("version 2"), "{future}");
    }

    #[test]
    fn payload_of_another_type_is_a_codec_error() {
        let error = decode_payload::<u32>(b"\"text\"").unwrap_err().to_string();
        assert!(error.contains("`u32`"), "{error}");
    }

    #[test]
    fn decode_ok_says_why_there_is_no_value() {
        use crate::Error;
        use stored_result::decode_ok;

        let bytes = stored_result::encode_ok(&vec![1, 2]).unwrap();
        assert_eq!(bytes, b"\x01O[1,2]");
        assert_eq!(decode_ok::<Vec<u32>>(&bytes).unwrap(), vec![1, 2]);
        assert!(matches!(
            decode_ok::<u32>(b"\x01E\"no\""),
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            decode_ok::<u32>(b"\x01Ntoo large"),
            Err(Error::ResultNotStored { reason }) if reason == "too large"
        ));
        assert!(matches!(decode_ok::<u32>(b"\x02O1"), Err(Error::Codec(_))));
        assert!(matches!(decode_ok::<u32>(b""), Err(Error::Codec(_))));
        assert!(matches!(
            decode_ok::<u32>(b"\x01O\"text\""),
            Err(Error::Codec(_))
        ));
    }
}
