//! Parameters written into the SQL text, for statements sent as one simple
//! query (which carries no parameters): both stores' operations and the
//! migration.
//!
//! Every value becomes a typed literal that reads the same whatever the
//! server's `standard_conforming_strings`: text as an escape string
//! (`E'...'`, backslashes and quotes doubled), bytes as hex, integers as
//! digits. A NUL character, which no PostgreSQL text can hold and which
//! would end the query's text on the wire, is refused.

use std::fmt::Write as _;
use std::time::Duration;

use idempotent_core::{BackendError, BackendErrorKind};

use crate::driver::Param;
use crate::sql::Sql;

/// `value` as a `text` literal.
pub(crate) fn text(value: &str) -> Result<String, BackendError> {
    if value.contains('\0') {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "PostgreSQL text cannot contain a NUL character (\\0)",
        ));
    }
    let mut literal = String::with_capacity(value.len() + 10);
    literal.push_str("(E'");
    for c in value.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("''"),
            c => literal.push(c),
        }
    }
    literal.push_str("'::text)");
    Ok(literal)
}

/// `value` as a `bytea` literal, in hex.
pub(crate) fn bytes(value: &[u8]) -> String {
    let mut literal = String::with_capacity(value.len() * 2 + 16);
    literal.push_str("(E'\\\\x");
    for byte in value {
        let _ = write!(literal, "{byte:02x}");
    }
    literal.push_str("'::bytea)");
    literal
}

fn param(param: &Param<'_>) -> Result<String, BackendError> {
    Ok(match param {
        Param::Text(value) => text(value)?,
        Param::Bytes(value) => bytes(value),
        // Quoted: `-9223372036854775808::bigint` would read as the negation
        // of a number too large for a bigint.
        Param::BigInt(value) => format!("('{value}'::bigint)"),
    })
}

/// `statement` after a `statement_timeout` of `bound` that holds for it
/// alone, as the text of one simple query (its implicit transaction ends
/// the setting).
pub(crate) fn bounded(bound: Duration, statement: &str) -> String {
    format!(
        "SET LOCAL statement_timeout = {}; {statement}",
        bound.as_millis()
    )
}

/// The literals of `params`, comma-separated: the arguments of an
/// `EXECUTE` of `sql`.
pub(crate) fn list(sql: &Sql, params: &[Param<'_>]) -> Result<String, BackendError> {
    check_count(sql, params)?;
    let literals = params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
    Ok(literals.join(", "))
}

fn check_count(sql: &Sql, params: &[Param<'_>]) -> Result<(), BackendError> {
    if params.len() != sql.params {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            format!(
                "a statement of {} parameters was given {}",
                sql.params,
                params.len()
            ),
        ));
    }
    Ok(())
}

/// `sql` with each `$n` replaced by the literal of `params[n - 1]`.
///
/// Placeholders inside quoted names or strings are left alone: a table
/// named `"a$1"` stays as it is. The store's statements have at most nine
/// parameters, so `$n` is one digit.
pub(crate) fn inline(sql: &Sql, params: &[Param<'_>]) -> Result<String, BackendError> {
    check_count(sql, params)?;
    let literals = params.iter().map(param).collect::<Result<Vec<_>, _>>()?;
    let extra: usize = literals.iter().map(String::len).sum();
    let mut out = String::with_capacity(sql.text.len() + extra);
    let mut quote: Option<char> = None;
    let mut chars = sql.text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') => {
                if let Some(n) = chars.peek().and_then(|d| d.to_digit(10)) {
                    chars.next();
                    let literal = (n as usize)
                        .checked_sub(1)
                        .and_then(|index| literals.get(index))
                        .ok_or_else(|| {
                            BackendError::new(
                                BackendErrorKind::Other,
                                format!("the statement names a parameter ${n} it was not given"),
                            )
                        })?;
                    out.push_str(literal);
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_an_escape_string_whatever_the_server_reads_backslashes_as() {
        assert_eq!(text("it's").unwrap(), "(E'it''s'::text)");
        assert_eq!(text(r"a\'b").unwrap(), r"(E'a\\''b'::text)");
        assert_eq!(text("é").unwrap(), "(E'é'::text)");
        let error = text("a\0b").unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }

    #[test]
    fn the_smallest_bigint_is_quoted() {
        let sql = Sql::new("test", "SELECT $1".to_owned(), 1);
        assert_eq!(
            inline(&sql, &[Param::BigInt(i64::MIN)]).unwrap(),
            "SELECT ('-9223372036854775808'::bigint)"
        );
    }

    #[test]
    fn bytes_are_hex() {
        assert_eq!(bytes(&[0, 0xab, 0x10]), r"(E'\\x00ab10'::bytea)");
        assert_eq!(bytes(&[]), r"(E'\\x'::bytea)");
    }

    #[test]
    fn placeholders_in_quotes_are_left_alone() {
        let sql = Sql::new(
            "test",
            r#"SELECT $1, '$2', "t$1""x", $2 FROM "a$2""#.to_owned(),
            2,
        );
        let out = inline(&sql, &[Param::BigInt(-5), Param::Text("k")]).unwrap();
        assert_eq!(
            out,
            r#"SELECT ('-5'::bigint), '$2', "t$1""x", (E'k'::text) FROM "a$2""#
        );
    }

    #[test]
    fn a_parameter_count_that_does_not_match_is_an_error() {
        let sql = Sql::new("test", "SELECT $1".to_owned(), 1);
        assert!(inline(&sql, &[]).is_err());
    }
}
