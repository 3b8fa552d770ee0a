//! Reading values a simple query returns: there every value comes as text,
//! in the server's output format for its type (both stores run their
//! statements as simple queries, see `PostgresBackend::run`).

use std::fmt::Display;

/// A value that does not read as its column's type: the row is not one the
/// store's statement returns.
#[derive(Debug)]
pub(crate) struct Unreadable(pub(crate) String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreadable {}

fn unreadable(column: &str, kind: &str, value: impl Display) -> Unreadable {
    Unreadable(format!("column {column:?} is not a {kind}: {value}"))
}

/// A `boolean`: `t` or `f`.
#[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
pub(crate) fn boolean(column: &str, value: &str) -> Result<bool, Unreadable> {
    match value {
        "t" => Ok(true),
        "f" => Ok(false),
        other => Err(unreadable(column, "boolean", format!("{other:?}"))),
    }
}

/// A `bigint`, in decimal.
#[cfg_attr(not(feature = "tokio-postgres"), allow(dead_code))]
pub(crate) fn bigint(column: &str, value: &str) -> Result<i64, Unreadable> {
    value
        .parse()
        .map_err(|_| unreadable(column, "bigint", format!("{value:?}")))
}

/// A `bytea`, in either output format the server may be set to
/// (`bytea_output`): `hex` (`\x` then two digits a byte, the default) or
/// `escape` (printable ASCII as itself, `\\` for a backslash, `\ooo` in
/// octal for any other byte).
pub(crate) fn bytea(column: &str, value: &str) -> Result<Vec<u8>, Unreadable> {
    let bad = || unreadable(column, "bytea", "not in the hex or escape format");
    if let Some(hex) = value.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return Err(bad());
        }
        return hex
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| Some(digit(pair[0], 16)? * 16 + digit(pair[1], 16)?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad);
    }
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'\\' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                bytes.push(b'\\');
                rest = after;
            }
            [a, b, c, after @ ..] => {
                let octal = || {
                    let value = u16::from(digit(*a, 8)?) * 64
                        + u16::from(digit(*b, 8)?) * 8
                        + u16::from(digit(*c, 8)?);
                    u8::try_from(value).ok()
                };
                bytes.push(octal().ok_or_else(bad)?);
                rest = after;
            }
            _ => return Err(bad()),
        }
    }
    Ok(bytes)
}

fn digit(c: u8, radix: u32) -> Option<u8> {
    char::from(c)
        .to_digit(radix)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_bigints() {
        assert!(boolean("c", "t").unwrap());
        assert!(!boolean("c", "f").unwrap());
        assert!(boolean("c", "true").is_err());
        assert_eq!(bigint("c", "-9223372036854775808").unwrap(), i64::MIN);
        assert!(bigint("c", "1.5").is_err());
    }

    #[test]
    fn bytea_in_hex() {
        assert_eq!(bytea("c", r"\x00ab10FF").unwrap(), [0, 0xab, 0x10, 0xff]);
        assert_eq!(bytea("c", r"\x").unwrap(), Vec::<u8>::new());
        assert!(bytea("c", r"\x0").is_err());
        assert!(bytea("c", r"\xzz").is_err());
    }

    #[test]
    fn bytea_in_the_escape_format() {
        assert_eq!(bytea("c", r"a\\b\000\377").unwrap(), b"a\\b\x00\xff");
        assert_eq!(bytea("c", "").unwrap(), Vec::<u8>::new());
        assert!(bytea("c", r"\400").is_err(), "above a byte");
        assert!(bytea("c", r"\12").is_err(), "cut short");
        assert!(bytea("c", r"\9aa").is_err(), "not octal");
    }
}
