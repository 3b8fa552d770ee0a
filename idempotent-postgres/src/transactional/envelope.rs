//! The encoding of a stored result, as `idempotent-core`'s runtime writes it,
//! so a key can be used through the runtime (`Idempotency::run`,
//! `#[idempotent]`) and the transactional mode alike.
//!
//! The format is the runtime's (its `envelope.rs`, not public): `[version 1,
//! tag, payload..]`, the tag `O` for an `Ok` value as JSON, `E` for a cached
//! `Err`, `N` for "the body ran but its result could not be stored" with the
//! reason. `tests/transactional.rs` replays records across both ways, so a
//! change on either side fails there.

use idempotent_core::{CodecError, Error};
use serde::de::DeserializeOwned;
use serde::Serialize;

const VERSION: u8 = 1;
const OK: u8 = b'O';
const ERR: u8 = b'E';
const NOT_STORED: u8 = b'N';

pub(crate) fn encode_ok<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&[VERSION, OK]);
    serde_json::to_writer(&mut bytes, value)?;
    Ok(bytes)
}

/// The stored `Ok` value, or why there is none: [`Error::Codec`] for a
/// record that does not decode as `T` (or holds a cached `Err`, which this
/// mode never stores), [`Error::ResultNotStored`] for the runtime's marker.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match bytes {
        [VERSION, OK, payload @ ..] => serde_json::from_slice(payload).map_err(|error| {
            Error::Codec(
                CodecError::new(format!(
                    "the stored result cannot be decoded as `{}` (did the type change since it \
                     was stored?)",
                    std::any::type_name::<T>()
                ))
                .with_source(error),
            )
        }),
        [VERSION, ERR, ..] => Err(Error::Codec(CodecError::new(
            "the stored record holds a cached error (`cache_err`), which transactional calls \
             do not replay",
        ))),
        [VERSION, NOT_STORED, reason @ ..] => Err(Error::ResultNotStored {
            reason: String::from_utf8_lossy(reason).into_owned(),
        }),
        [version, ..] if *version != VERSION => Err(Error::Codec(CodecError::new(format!(
            "the stored result has encoding version {version}, this build reads version {VERSION}"
        )))),
        _ => Err(Error::Codec(CodecError::new(
            "the stored result is not a valid record",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_values_round_trip() {
        let bytes = encode_ok(&vec![1, 2]).unwrap();
        assert_eq!(bytes, b"\x01O[1,2]");
        assert_eq!(decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2]);
    }

    #[test]
    fn other_records_are_errors_that_say_why() {
        assert!(matches!(
            decode::<u32>(b"\x01E\"no\""),
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            decode::<u32>(b"\x01Ntoo large"),
            Err(Error::ResultNotStored { reason }) if reason == "too large"
        ));
        assert!(matches!(decode::<u32>(b"\x02O1"), Err(Error::Codec(_))));
        assert!(matches!(decode::<u32>(b""), Err(Error::Codec(_))));
        assert!(matches!(
            decode::<u32>(b"\x01O\"text\""),
            Err(Error::Codec(_))
        ));
    }
}
