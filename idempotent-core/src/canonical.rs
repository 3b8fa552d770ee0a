//! The canonical binary encoding that fingerprints and keys are hashed from.
//!
//! [`write`] drives a `serde::Serializer` that streams an unambiguous encoding of
//! any `Serialize` value straight into a [`Sink`] (normally a SHA-256 hasher),
//! so hashing the arguments of every call costs no allocation, except for
//! maps, whose entries must be buffered to be sorted.
//!
//! The encoding is built for three properties:
//!
//! - **Unambiguous.** Every value is a tag byte and a self-delimiting payload
//!   (a LEB128 number, a length-prefixed run of bytes, eight float bytes, or a
//!   list closed by `00`, a byte no value starts with). The encoding is thus
//!   prefix-free: two different values never give the same bytes, so
//!   `("ab", "c")` differs from `("a", "bc")` and `[[1], []]` from `[[], [1]]`.
//! - **Canonical.** Values that are equal encode identically: map entries are
//!   sorted by their encoded key (a `HashMap` hashes like a `BTreeMap` with the
//!   same entries), integers encode by value whatever their width, `-0.0` is
//!   `0.0` and every NaN is one NaN.
//! - **Stable.** Only what serde exposes is encoded (values, field and variant
//!   names), never a Rust type name, so renaming a type, wrapping a field in a
//!   newtype or widening `u32` to `u64` keeps fingerprints. Changing any byte
//!   below changes every stored fingerprint, so every key in flight during a
//!   deploy would be rejected as a payload mismatch: the `golden_*` tests pin
//!   the format.
//!
//! | value | bytes |
//! | --- | --- |
//! | `()`, unit struct | `01` |
//! | `None` / `Some(v)` | `02` / `03` v |
//! | `false` / `true` | `04` / `05` |
//! | integer `n >= 0`, any width | `06` leb(n) |
//! | integer `n < 0`, any width | `07` leb(-1 - n) |
//! | `f32`, `f64` (widened to `f64`) | `08` f64 bits, little-endian |
//! | `char` | `09` leb(code point) |
//! | `str` | `0a` leb(len) UTF-8 |
//! | bytes | `0b` leb(len) bytes |
//! | seq, tuple, tuple struct, array | `0c` v… `00` |
//! | map | `0d` (k v)… `00`, sorted by the bytes of k |
//! | struct | `0e` (field-name-as-str v)… `00`, declaration order |
//! | unit variant | `0f` name |
//! | newtype variant | `10` name v |
//! | tuple variant | `11` name v… `00` |
//! | struct variant | `12` name (field-name-as-str v)… `00` |
//! | newtype struct | v (transparent) |
//!
//! `leb` is unsigned LEB128 in its shortest form (so each number has exactly
//! one encoding), `len` counts bytes, and `name` is leb(len) UTF-8. LEB128
//! rather than fixed u64s keeps the hashed input, and so SHA-256's work, small:
//! most lengths and integers take one byte.
//!
//! Caveat: serde cannot tell a set from a list, so a `HashSet` is encoded in
//! its (random) iteration order; arguments that are sets should be `BTreeSet`s.

use std::fmt;

use serde::ser::{self, Serialize};

use crate::CodecError;

/// Closes a list of values; no value starts with it, so lists need no count.
/// That keeps sequences of unknown length streamable, and keeps a struct's
/// encoding independent of the `len` serde announces (fields skipped with
/// `skip_serializing_if` are simply absent, exactly as if not declared).
const END: u8 = 0x00;
const UNIT: u8 = 0x01;
const NONE: u8 = 0x02;
const SOME: u8 = 0x03;
const FALSE: u8 = 0x04;
const TRUE: u8 = 0x05;
// Integers encode their mathematical value, not their Rust type, so widening
// `u32` to `u64` (or `i64` to `i128`) keeps fingerprints. A negative `n` is
// stored as `-1 - n` (`!n`), so every integer has exactly one encoding.
const UINT: u8 = 0x06;
const NINT: u8 = 0x07;
const FLOAT: u8 = 0x08;
const CHAR: u8 = 0x09;
const STR: u8 = 0x0a;
/// The tag of a `str`, for the local key form that writes a short string key
/// as itself.
pub(crate) const STR_TAG: u8 = STR;
const BYTES: u8 = 0x0b;
const SEQ: u8 = 0x0c;
const MAP: u8 = 0x0d;
const STRUCT: u8 = 0x0e;
const UNIT_VARIANT: u8 = 0x0f;
const NEWTYPE_VARIANT: u8 = 0x10;
const TUPLE_VARIANT: u8 = 0x11;
const STRUCT_VARIANT: u8 = 0x12;

/// The quiet NaN every NaN is encoded as (`f64::NAN` does not promise a bit
/// pattern, this does).
const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

/// Where canonical bytes go.
pub(crate) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);

    /// Appends the first `len` bytes of `bytes`: a short run written into a
    /// fixed-size array, which a sink may copy whole.
    fn put_prefix<const N: usize>(&mut self, bytes: &[u8; N], len: usize) {
        self.put(&bytes[..len]);
    }

    /// Appends a `str` value: its tag, length and bytes. A sink may keep
    /// the text as text (the local key form does).
    #[inline]
    fn put_str(&mut self, text: &str)
    where
        Self: Sized,
    {
        put_str_as_bytes(self, text);
    }
}

/// The bytes of a `str` value, as [`Sink::put_str`] appends them by default.
#[inline]
pub(crate) fn put_str_as_bytes<S: Sink>(sink: &mut S, text: &str) {
    put_tagged_bytes(sink, STR, text.as_bytes());
}

impl Sink for crate::hasher::Hasher {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        crate::hasher::Hasher::put(self, bytes);
    }

    #[inline]
    fn put_prefix<const N: usize>(&mut self, bytes: &[u8; N], len: usize) {
        crate::hasher::Hasher::put_prefix(self, bytes, len);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes the canonical encoding of `value` into `sink`.
///
/// Fails only when `value`'s own `Serialize` implementation fails; `sink` then
/// holds a partial encoding and should be discarded.
pub(crate) fn write<T: Serialize + ?Sized, S: Sink>(
    value: &T,
    sink: &mut S,
) -> Result<(), CodecError> {
    value.serialize(Encoder { sink }).map_err(|error| {
        CodecError::new(format!(
            "cannot serialize the idempotency key or arguments: {}",
            error.0
        ))
    })
}

/// A failure reported by a value's `Serialize` implementation.
#[derive(Debug)]
struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Writes a tag and `value` as LEB128 in one `put` (the hasher's per-call
/// overhead matters as much as the byte count for small values). The bytes
/// are gathered in a register and stored whole: written one at a time, the
/// copy into the sink that follows would have to wait for each byte.
fn put_tagged_u64<S: Sink>(sink: &mut S, tag: u8, mut value: u64) {
    // A tag plus at most ten 7-bit groups: 11 of the 16 bytes.
    let mut bytes = u128::from(tag);
    let mut shift = 8;
    while value >= 0x80 {
        bytes |= u128::from((value as u8) | 0x80) << shift;
        value >>= 7;
        shift += 8;
    }
    bytes |= u128::from(value) << shift;
    sink.put_prefix(&bytes.to_le_bytes(), shift / 8 + 1);
}

/// [`put_tagged_u64`] for values that may not fit 64 bits; the same value
/// gives the same bytes through either function.
fn put_tagged_u128<S: Sink>(sink: &mut S, tag: u8, mut value: u128) {
    if let Ok(value) = u64::try_from(value) {
        return put_tagged_u64(sink, tag, value);
    }
    // A tag plus at most nineteen 7-bit groups.
    let mut bytes = [0; 20];
    bytes[0] = tag;
    let mut len = 1;
    while value >= 0x80 {
        bytes[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    bytes[len] = value as u8;
    sink.put(&bytes[..=len]);
}

/// A tag, then `bytes` prefixed by their length.
fn put_tagged_bytes<S: Sink>(sink: &mut S, tag: u8, bytes: &[u8]) {
    put_tagged_u64(sink, tag, bytes.len() as u64);
    sink.put(bytes);
}

/// The serializer: a borrowed sink, so encoding nested values is a reborrow.
struct Encoder<'s, S: Sink> {
    sink: &'s mut S,
}

impl<S: Sink> Encoder<'_, S> {
    fn nested(&mut self) -> Encoder<'_, S> {
        Encoder {
            sink: &mut *self.sink,
        }
    }
}

impl<'s, S: Sink> ser::Serializer for Encoder<'s, S> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = MapEncoder<'s, S>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    /// Human-readable, so types with two forms (`Uuid`, `IpAddr`, dates) hash
    /// like their JSON form, the one users see in logs and stored records.
    fn is_human_readable(&self) -> bool {
        true
    }

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.sink.put(&[if v { TRUE } else { FALSE }]);
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        match u64::try_from(v) {
            Ok(v) => put_tagged_u64(self.sink, UINT, v),
            // `!v` is `-1 - v`, non-negative here, so the cast is exact.
            Err(_) => put_tagged_u64(self.sink, NINT, !v as u64),
        }
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        match u128::try_from(v) {
            Ok(v) => put_tagged_u128(self.sink, UINT, v),
            Err(_) => put_tagged_u128(self.sink, NINT, !v as u128),
        }
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        put_tagged_u64(self.sink, UINT, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        put_tagged_u128(self.sink, UINT, v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        // Widening is exact, so an f32 hashes like the f64 of the same value.
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        let bits = if v.is_nan() {
            CANONICAL_NAN
        } else if v == 0.0 {
            // -0.0 == 0.0, so they must hash alike.
            0
        } else {
            v.to_bits()
        };
        // Fixed width: float bits are rarely small, LEB128 would not help.
        let mut bytes = [0; 9];
        bytes[0] = FLOAT;
        bytes[1..].copy_from_slice(&bits.to_le_bytes());
        self.sink.put(&bytes);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        put_tagged_u64(self.sink, CHAR, u32::from(v).into());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.sink.put_str(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        put_tagged_bytes(self.sink, BYTES, v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), EncodeError> {
        self.sink.put(&[NONE]);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        self.sink.put(&[SOME]);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.sink.put(&[UNIT]);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        // By name, not index: reordering or inserting variants keeps hashes.
        put_tagged_bytes(self.sink, UNIT_VARIANT, variant.as_bytes());
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        // Transparent: `struct Id(String)` hashes like the `String`.
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        put_tagged_bytes(self.sink, NEWTYPE_VARIANT, variant.as_bytes());
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, EncodeError> {
        // END-terminated, so a known and an unknown length encode alike.
        self.sink.put(&[SEQ]);
        Ok(self)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self, EncodeError> {
        // Like a seq: a `Vec<T>`, a `[T; N]` and a tuple of equal elements
        // are the same arguments to the user.
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self, EncodeError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        put_tagged_bytes(self.sink, TUPLE_VARIANT, variant.as_bytes());
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapEncoder<'s, S>, EncodeError> {
        Ok(MapEncoder {
            sink: self.sink,
            buf: Vec::new(),
            entries: Vec::with_capacity(len.unwrap_or(0)),
            pending_key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, EncodeError> {
        // Fields stream in declaration order, unsorted (no allocation), so
        // reordering a struct's fields changes its fingerprint.
        self.sink.put(&[STRUCT]);
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, EncodeError> {
        put_tagged_bytes(self.sink, STRUCT_VARIANT, variant.as_bytes());
        Ok(self)
    }
}

impl<S: Sink> ser::SerializeSeq for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeTuple for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeTupleStruct for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeTupleVariant for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeStruct for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        // The name is a tagged str, so it can never be mistaken for END.
        put_tagged_bytes(self.sink, STR, key.as_bytes());
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

impl<S: Sink> ser::SerializeStructVariant for Encoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        put_tagged_bytes(self.sink, STR, key.as_bytes());
        value.serialize(self.nested())
    }

    fn end(self) -> Result<(), EncodeError> {
        self.sink.put(&[END]);
        Ok(())
    }
}

/// One map entry in [`MapEncoder::buf`]: the key is `start..value`, the value
/// `value..end`; they are adjacent, so an entry is written with one `put`.
struct Entry {
    start: usize,
    value: usize,
    end: usize,
}

/// Buffers a map's encoded entries, then writes them sorted by key, so the
/// encoding is independent of iteration order. All entries share one buffer:
/// two allocations per map, whatever its size.
struct MapEncoder<'s, S: Sink> {
    sink: &'s mut S,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Where the key awaiting its value starts and ends in `buf`.
    pending_key: Option<(usize, usize)>,
}

impl<S: Sink> ser::SerializeMap for MapEncoder<'_, S> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        // Hand-written `Serialize` impls can misuse the API; fail, never panic.
        if self.pending_key.is_some() {
            return Err(ser::Error::custom(
                "a map key was serialized without its value",
            ));
        }
        let start = self.buf.len();
        key.serialize(Encoder {
            sink: &mut self.buf,
        })?;
        self.pending_key = Some((start, self.buf.len()));
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        let Some((start, value_start)) = self.pending_key.take() else {
            return Err(ser::Error::custom(
                "a map value was serialized without a key",
            ));
        };
        value.serialize(Encoder {
            sink: &mut self.buf,
        })?;
        self.entries.push(Entry {
            start,
            value: value_start,
            end: self.buf.len(),
        });
        Ok(())
    }

    fn end(mut self) -> Result<(), EncodeError> {
        if self.pending_key.is_some() {
            return Err(ser::Error::custom(
                "a map key was serialized without its value",
            ));
        }
        let buf = &self.buf;
        // Encodings are prefix-free, so byte order on keys is a total order
        // on distinct keys; ties (impossible in a real map) fall back to the
        // value, so even then the output does not depend on input order.
        self.entries.sort_unstable_by(|a, b| {
            buf[a.start..a.value]
                .cmp(&buf[b.start..b.value])
                .then_with(|| buf[a.value..a.end].cmp(&buf[b.value..b.end]))
        });
        self.sink.put(&[MAP]);
        for entry in &self.entries {
            self.sink.put(&buf[entry.start..entry.end]);
        }
        self.sink.put(&[END]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Serialize, Serializer};
    use sha2::{Digest, Sha256};

    use super::*;

    fn enc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        write(value, &mut out).expect("test values serialize");
        out
    }

    fn hex<T: Serialize + ?Sized>(value: &T) -> String {
        let mut hasher = crate::hasher::Hasher::new();
        write(value, &mut hasher).expect("test values serialize");
        hasher
            .finish()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    #[test]
    fn golden_bytes_follow_the_documented_table() {
        let value = (
            1u8,
            -1i8,
            "a",
            Some(()),
            None::<()>,
            true,
            'x',
            0.5f32,
            300u16,
            -129i32,
            u128::MAX,
        );
        let mut expected = vec![
            0x0c, // seq
            0x06, 0x01, // 1
            0x07, 0x00, // -1
            0x0a, 0x01, b'a', // "a"
            0x03, 0x01, // Some(())
            0x02, // None
            0x05, // true
            0x09, b'x', // 'x'
            0x08, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f, // 0.5
            0x06, 0xac, 0x02, // 300
            0x07, 0x80, 0x01, // -129
            0x06, // u128::MAX: 18 full groups, then the top 2 bits
        ];
        expected.extend([0xff; 18]);
        expected.extend([0x03, 0x00]);
        assert_eq!(enc(&value), expected);

        #[derive(Serialize)]
        struct Point {
            x: u32,
        }
        #[derive(Serialize)]
        enum Shape {
            Dot,
            At(Point),
        }
        let mut map = HashMap::new();
        map.insert("b", Shape::Dot);
        map.insert("a", Shape::At(Point { x: 7 }));
        let expected = [
            0x0d, // map, sorted by key
            0x0a, 0x01, b'a', // "a"
            0x10, 0x02, b'A', b't', // newtype variant At
            0x0e, 0x0a, 0x01, b'x', 0x06, 0x07, 0x00, // struct { x: 7 }
            0x0a, 0x01, b'b', // "b"
            0x0f, 0x03, b'D', b'o', b't', // unit variant Dot
            0x00,
        ];
        assert_eq!(enc(&map), expected);
    }

    #[test]
    fn golden_digest_is_stable() {
        #[derive(Serialize)]
        struct Request<'a> {
            id: u64,
            amount: i64,
            tags: BTreeMap<&'a str, Vec<u8>>,
            note: Option<&'a str>,
        }
        let mut tags = BTreeMap::new();
        tags.insert("k", vec![1, 2]);
        let request = Request {
            id: 42,
            amount: -5,
            tags,
            note: None,
        };
        assert_eq!(
            hex(&request),
            "74895c81c91be3049844a18ff0e7863362400de69d1897ba793182a5d1a84cd3",
        );
    }

    #[test]
    fn hasher_sink_sees_the_same_bytes_as_a_vec() {
        let value = (vec!["x"; 3], Some(1.25f64), [7u16; 4]);
        let digest: String = Sha256::digest(enc(&value))
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hex(&value), digest);
    }

    #[test]
    fn hash_map_is_independent_of_insertion_order_and_equals_btree_map() {
        let forward: HashMap<String, u32> = (0..500).map(|i| (format!("key{i}"), i)).collect();
        let backward: HashMap<String, u32> =
            (0..500).rev().map(|i| (format!("key{i}"), i)).collect();
        let btree: BTreeMap<String, u32> = (0..500).map(|i| (format!("key{i}"), i)).collect();
        assert_eq!(enc(&forward), enc(&backward));
        assert_eq!(enc(&forward), enc(&btree));

        let mut other = btree.clone();
        other.insert("key0".into(), 1);
        assert_ne!(enc(&btree), enc(&other));
    }

    #[test]
    fn map_keys_hash_by_value_not_by_type() {
        let narrow: HashMap<u8, &str> = [(1, "a"), (200, "b")].into_iter().collect();
        let wide: BTreeMap<i64, &str> = [(200, "b"), (1, "a")].into_iter().collect();
        assert_eq!(enc(&narrow), enc(&wide));
    }

    #[test]
    fn nested_maps_are_canonical() {
        #[derive(Serialize)]
        struct Item {
            name: &'static str,
            attrs: HashMap<String, HashMap<u32, bool>>,
        }
        fn build(reverse: bool) -> Vec<Item> {
            let mut keys: Vec<u32> = (0..50).collect();
            if reverse {
                keys.reverse();
            }
            let mut attrs = HashMap::new();
            for &k in &keys {
                let inner: HashMap<u32, bool> =
                    keys.iter().map(|&i| (i, i % k.max(1) == 0)).collect();
                attrs.insert(format!("attr{k}"), inner);
            }
            vec![
                Item {
                    name: "first",
                    attrs,
                },
                Item {
                    name: "empty",
                    attrs: HashMap::new(),
                },
            ]
        }
        assert_eq!(enc(&build(false)), enc(&build(true)));
    }

    #[test]
    fn flattened_maps_are_canonical() {
        #[derive(Serialize)]
        struct Flat {
            id: u32,
            #[serde(flatten)]
            extra: HashMap<String, u32>,
        }
        let a = Flat {
            id: 1,
            extra: (0..40).map(|i| (format!("f{i}"), i)).collect(),
        };
        let b = Flat {
            id: 1,
            extra: (0..40).rev().map(|i| (format!("f{i}"), i)).collect(),
        };
        assert_eq!(enc(&a), enc(&b));
    }

    #[test]
    fn boundaries_between_values_are_unambiguous() {
        assert_ne!(enc(&("ab", "c")), enc(&("a", "bc")));
        assert_ne!(enc(&vec![vec![1], vec![]]), enc(&vec![vec![], vec![1]]));
        assert_ne!(enc(&(vec![1, 2], vec![3])), enc(&(vec![1], vec![2, 3])));
        assert_ne!(enc(&Some(())), enc(&None::<()>));
        assert_ne!(enc(&Some(())), enc(&()));
        assert_ne!(enc(&None::<()>), enc(&()));
        assert_ne!(enc(&Some(None::<u8>)), enc(&None::<Option<u8>>));
        assert_ne!(enc("1"), enc(&1));
        assert_ne!(enc("a"), enc(&'a'));
        assert_ne!(enc(&1.0), enc(&1));
        assert_ne!(enc(&true), enc(&1));
        assert_ne!(enc(""), enc(&()));
        assert_ne!(enc(&Vec::<u8>::new()), enc(&BTreeMap::<u8, u8>::new()));
    }

    #[test]
    fn bytes_differ_from_str() {
        struct Bytes(&'static [u8]);
        impl Serialize for Bytes {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }
        assert_ne!(enc(&Bytes(b"abc")), enc("abc"));
        assert_ne!(enc(&Bytes(b"abc")), enc(b"abc")); // &[u8; 3] is a tuple
        assert_ne!(enc(&Bytes(b"ab")), enc(&Bytes(b"abc")));
    }

    #[test]
    fn strings_hash_alike_whatever_their_container() {
        let boxed: Box<str> = "hello".into();
        let owned = String::from("hello");
        let cow: std::borrow::Cow<'_, str> = "hello".into();
        assert_eq!(enc("hello"), enc(&owned));
        assert_eq!(enc("hello"), enc(&boxed));
        assert_eq!(enc("hello"), enc(&cow));
        assert_eq!(enc(&format_args!("hel{}", "lo")), enc("hello"));
    }

    #[test]
    fn integers_hash_by_value_whatever_their_width() {
        let five = enc(&5u8);
        for other in [
            enc(&5u16),
            enc(&5u32),
            enc(&5u64),
            enc(&5u128),
            enc(&5usize),
            enc(&5i8),
            enc(&5i32),
            enc(&5i64),
            enc(&5i128),
        ] {
            assert_eq!(five, other);
        }
        assert_eq!(enc(&-5i8), enc(&-5i64));
        assert_eq!(enc(&-5i8), enc(&-5i128));
        assert_ne!(enc(&-1i8), enc(&255u8));
        assert_ne!(enc(&-1i64), enc(&u64::MAX));
        assert_eq!(enc(&u64::MAX), enc(&u128::from(u64::MAX)));
        assert_eq!(enc(&i64::MIN), enc(&i128::from(i64::MIN)));

        let big = [
            enc(&u128::MAX),
            enc(&(u128::from(u64::MAX) + 1)),
            enc(&i128::MIN),
            enc(&(i128::from(i64::MIN) - 1)),
            enc(&u64::MAX),
            enc(&i64::MIN),
        ];
        for (i, a) in big.iter().enumerate() {
            for b in &big[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn floats_are_normalised() {
        assert_eq!(enc(&0.0f64), enc(&-0.0f64));
        assert_eq!(enc(&0.0f32), enc(&-0.0f64));
        assert_eq!(enc(&1.5f32), enc(&1.5f64));
        assert_eq!(enc(&f64::NAN), enc(&-f64::NAN));
        assert_eq!(enc(&f64::NAN), enc(&f32::NAN));
        assert_eq!(enc(&f64::NAN), enc(&f64::from_bits(0x7ff0_0000_0000_0001)));
        assert_ne!(enc(&f64::INFINITY), enc(&f64::NEG_INFINITY));
        assert_ne!(enc(&f64::NAN), enc(&f64::INFINITY));
        assert_ne!(enc(&0.1f64), enc(&0.2f64));
    }

    #[test]
    fn type_names_are_not_hashed() {
        #[derive(Serialize)]
        struct Charge {
            amount: u64,
            currency: &'static str,
        }
        #[derive(Serialize)]
        struct Payment {
            amount: u32,
            currency: String,
        }
        #[derive(Serialize)]
        struct Marker;
        assert_eq!(
            enc(&Charge {
                amount: 10,
                currency: "EUR"
            }),
            enc(&Payment {
                amount: 10,
                currency: "EUR".into()
            })
        );
        assert_eq!(enc(&Marker), enc(&()));
    }

    #[test]
    fn struct_fields_hash_by_name_in_declaration_order() {
        #[derive(Serialize)]
        struct Ab {
            a: u8,
            b: u8,
        }
        #[derive(Serialize)]
        struct Ba {
            b: u8,
            a: u8,
        }
        #[derive(Serialize)]
        struct Ac {
            a: u8,
            c: u8,
        }
        let ab = enc(&Ab { a: 1, b: 2 });
        // Reordering the declaration changes the fingerprint (fields stream
        // unsorted), and so does renaming a field.
        assert_ne!(ab, enc(&Ba { b: 2, a: 1 }));
        assert_ne!(ab, enc(&Ac { a: 1, c: 2 }));
        // A struct is not a map nor a tuple with the same contents.
        let map: BTreeMap<&str, u8> = [("a", 1), ("b", 2)].into_iter().collect();
        assert_ne!(ab, enc(&map));
        assert_ne!(ab, enc(&(1u8, 2u8)));
    }

    #[test]
    fn skipped_fields_are_absent() {
        #[derive(Serialize)]
        struct WithOptional {
            a: u8,
            #[serde(skip_serializing_if = "Option::is_none")]
            note: Option<&'static str>,
            b: u8,
        }
        #[derive(Serialize)]
        struct Without {
            a: u8,
            b: u8,
        }
        let skipped = enc(&WithOptional {
            a: 1,
            note: None,
            b: 2,
        });
        let present = enc(&WithOptional {
            a: 1,
            note: Some("x"),
            b: 2,
        });
        assert_eq!(
            skipped,
            enc(&WithOptional {
                a: 1,
                note: None,
                b: 2
            })
        );
        assert_ne!(skipped, present);
        // Adding an optional, skipped-when-empty field keeps old fingerprints.
        assert_eq!(skipped, enc(&Without { a: 1, b: 2 }));
    }

    #[test]
    fn sequences_tuples_and_arrays_hash_alike() {
        #[derive(Serialize)]
        struct Pair(u8, u8);
        let vec = enc(&vec![1u8, 2]);
        assert_eq!(vec, enc(&[1u8, 2]));
        assert_eq!(vec, enc(&(1u8, 2u8)));
        assert_eq!(vec, enc(&Pair(1, 2)));
        assert_eq!(vec, enc(&std::collections::VecDeque::from([1u8, 2])));
    }

    #[test]
    fn sequences_of_unknown_length_hash_like_known_ones() {
        struct Evens(u32);
        impl Serialize for Evens {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // `Filter` has no exact size hint: serde passes `len: None`.
                serializer.collect_seq((0..self.0).filter(|i| i % 2 == 0))
            }
        }
        assert_eq!(enc(&Evens(7)), enc(&vec![0u32, 2, 4, 6]));
        assert_ne!(enc(&Evens(7)), enc(&Evens(9)));
    }

    #[test]
    fn enum_variants_hash_by_name_and_shape() {
        #[derive(Serialize)]
        enum Old {
            Pending,
            Paid(u64),
        }
        #[derive(Serialize)]
        enum New {
            Refunded,
            Paid(u32),
            Pending,
            Both(u32, u32),
            Split { a: u32, b: u32 },
            Wrapped((u32, u32)),
        }
        // Same name and payload: equal, whatever the index or enum name.
        assert_eq!(enc(&Old::Pending), enc(&New::Pending));
        assert_eq!(enc(&Old::Paid(3)), enc(&New::Paid(3)));
        assert_ne!(enc(&Old::Paid(3)), enc(&New::Paid(4)));
        assert_ne!(enc(&New::Pending), enc(&New::Refunded));
        // A unit variant is not its name as a string.
        assert_ne!(enc(&New::Pending), enc("Pending"));
        // Tuple, struct and newtype-of-tuple variants are all distinct.
        let shapes = [
            enc(&New::Both(1, 2)),
            enc(&New::Split { a: 1, b: 2 }),
            enc(&New::Wrapped((1, 2))),
        ];
        assert_ne!(shapes[0], shapes[1]);
        assert_ne!(shapes[0], shapes[2]);
        assert_ne!(shapes[1], shapes[2]);
    }

    #[test]
    fn newtypes_are_transparent() {
        #[derive(Serialize)]
        struct Id(String);
        #[derive(Serialize)]
        struct Amount(u64);
        assert_eq!(enc(&Id("abc".into())), enc("abc"));
        assert_eq!(enc(&Amount(9)), enc(&9u8));
        assert_eq!(enc(&Some(Id("x".into()))), enc(&Some("x")));
    }

    #[test]
    fn serialize_errors_propagate() {
        struct Boom;
        impl Serialize for Boom {
            fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("boom"))
            }
        }
        let mut out = Vec::new();
        let error = write(&vec![Some(Boom)], &mut out).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot serialize the idempotency key or arguments: boom"
        );

        // Inside a map key and a map value too.
        struct BoomMap(bool);
        impl Serialize for BoomMap {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(None)?;
                if self.0 {
                    map.serialize_entry(&Boom, &1)?;
                } else {
                    map.serialize_entry(&1, &Boom)?;
                }
                map.end()
            }
        }
        assert!(write(&BoomMap(true), &mut Vec::new()).is_err());
        assert!(write(&BoomMap(false), &mut Vec::new()).is_err());
    }

    #[test]
    fn misused_map_serializer_fails_without_panicking() {
        use serde::ser::SerializeMap;
        enum Misuse {
            ValueFirst,
            TwoKeys,
            DanglingKey,
        }
        impl Serialize for Misuse {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                match self {
                    Misuse::ValueFirst => map.serialize_value(&1)?,
                    Misuse::TwoKeys => {
                        map.serialize_key(&1)?;
                        map.serialize_key(&2)?;
                    }
                    Misuse::DanglingKey => map.serialize_key(&1)?,
                }
                map.end()
            }
        }
        for misuse in [Misuse::ValueFirst, Misuse::TwoKeys, Misuse::DanglingKey] {
            assert!(write(&misuse, &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn large_strings_work() {
        let big = "x".repeat(200 * 1024);
        let encoded = enc(&big);
        assert_eq!(encoded.len(), 4 + big.len());
        assert_eq!(encoded[..4], [STR, 0x80, 0xc0, 0x0c]); // 204_800 in LEB128
        assert_eq!(hex(&big), hex(big.as_str()));
        let mut other = big.clone();
        other.push('y');
        assert_ne!(hex(&big), hex(&other));
    }
}
