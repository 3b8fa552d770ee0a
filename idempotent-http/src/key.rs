//! Reading the idempotency key from its header: one value, in the draft's
//! sf-string form (`"8e03978e-..."`) or as a plain token (`8e03978e-...`),
//! both naming the same key.

use http::header::{HeaderMap, HeaderName};

/// Why a key header was refused (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The header appeared more than once: which one the client meant is
    /// unknowable, and picking one could replay the wrong request.
    Repeated,
    /// Neither an sf-string nor a token; the reason says what is wrong.
    Malformed(&'static str),
    /// Longer than the configured limit (in bytes, after unquoting).
    TooLong { max: usize },
}

/// The key of a request, or `None` when the header is absent.
pub(crate) fn read(
    headers: &HeaderMap,
    name: &HeaderName,
    max_len: usize,
) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    let key = parse(value.as_bytes())?;
    if key.is_empty() {
        return Err(KeyError::Malformed("the key is empty"));
    }
    if key.len() > max_len {
        return Err(KeyError::TooLong { max: max_len });
    }
    Ok(Some(key))
}

fn parse(value: &[u8]) -> Result<String, KeyError> {
    match value {
        [b'"', rest @ ..] => parse_sf_string(rest),
        _ => parse_token(value),
    }
}

/// RFC 8941 §4.2.5: printable ASCII between double quotes, where only `"`
/// and `\` may be (and must be) escaped with a backslash.
fn parse_sf_string(after_quote: &[u8]) -> Result<String, KeyError> {
    let mut key = String::with_capacity(after_quote.len());
    let mut bytes = after_quote.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'"' if bytes.as_slice().is_empty() => return Ok(key),
            b'"' => {
                return Err(KeyError::Malformed(
                    "text follows the closing quote (parameters are not accepted)",
                ))
            }
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => key.push(char::from(escaped)),
                _ => {
                    return Err(KeyError::Malformed(
                        "a backslash may only escape `\"` or `\\`",
                    ))
                }
            },
            0x20..=0x7e => key.push(char::from(byte)),
            _ => {
                return Err(KeyError::Malformed(
                    "a quoted key may only hold printable ASCII characters",
                ))
            }
        }
    }
    Err(KeyError::Malformed("the quoted key has no closing quote"))
}

/// A plain token: RFC 9110 `tchar`s plus `:` and `/` (the characters of an
/// sf-token). Unlike an sf-token it may start with a digit, so a bare UUID
/// passes.
fn parse_token(value: &[u8]) -> Result<String, KeyError> {
    if value.iter().all(|&byte| is_token_char(byte)) {
        // Token characters are ASCII, so this cannot fail.
        Ok(String::from_utf8_lossy(value).into_owned())
    } else {
        Err(KeyError::Malformed(
            "an unquoted key may only hold letters, digits and !#$%&'*+-.^_`|~:/ \
             (quote it as a string for other characters)",
        ))
    }
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NAME: HeaderName = HeaderName::from_static("idempotency-key");

    fn read_one(value: &'static str) -> Result<Option<String>, KeyError> {
        let mut headers = HeaderMap::new();
        headers.insert(NAME, HeaderValue::from_static(value));
        read(&headers, &NAME, 16)
    }

    #[test]
    fn absent_header_is_no_key() {
        assert_eq!(read(&HeaderMap::new(), &NAME, 16), Ok(None));
    }

    #[test]
    fn sf_string_and_token_name_the_same_key() {
        assert_eq!(read_one("\"order-1\""), Ok(Some("order-1".into())));
        assert_eq!(read_one("order-1"), Ok(Some("order-1".into())));
    }

    #[test]
    fn tokens_may_start_with_a_digit_and_hold_colons_and_slashes() {
        assert_eq!(read_one("8e03978e-40d5"), Ok(Some("8e03978e-40d5".into())));
        assert_eq!(read_one("a:b/c"), Ok(Some("a:b/c".into())));
    }

    #[test]
    fn sf_strings_unescape_and_allow_spaces() {
        assert_eq!(read_one(r#""a \"b\" \\c""#), Ok(Some(r#"a "b" \c"#.into())));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for value in [
            "\"open",
            "\"a\";p=1",
            r#""bad \n escape""#,
            "two words",
            "semi;colon",
            "\"\"",
        ] {
            assert!(
                matches!(read_one(value), Err(KeyError::Malformed(_))),
                "{value:?} was accepted"
            );
        }
    }

    #[test]
    fn non_ascii_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(NAME, HeaderValue::from_bytes(b"\"caf\xc3\xa9\"").unwrap());
        assert!(matches!(
            read(&headers, &NAME, 16),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn length_is_counted_after_unquoting() {
        assert_eq!(
            read_one("\"0123456789abcdef\""),
            Ok(Some("0123456789abcdef".into()))
        );
        assert_eq!(
            read_one("0123456789abcdefg"),
            Err(KeyError::TooLong { max: 16 })
        );
    }

    #[test]
    fn a_repeated_header_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append(NAME, HeaderValue::from_static("a"));
        headers.append(NAME, HeaderValue::from_static("a"));
        assert_eq!(read(&headers, &NAME, 16), Err(KeyError::Repeated));
    }
}
