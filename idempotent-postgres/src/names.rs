//! Where the records live: a schema and a table, quoted for SQL.

use std::fmt;

/// The default schema: where unqualified tables go in a new database.
pub const DEFAULT_SCHEMA: &str = "public";
/// The default table. Not `idempotency_keys`, the name hand-written versions
/// of this pattern tend to use, so `migrate` never adopts such a table.
pub const DEFAULT_TABLE: &str = "idempotent_records";

/// A schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl Table {
    pub(crate) fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"`, quoted.
    pub(crate) fn quoted_schema(&self) -> String {
        quote_ident(&self.schema)
    }

    /// The name of the index on `expires_at`, quoted, unqualified (an index
    /// lives in its table's schema).
    pub(crate) fn quoted_expiry_index(&self) -> String {
        quote_ident(&format!("{}_expires_at", self.name))
    }
}

impl fmt::Display for Table {
    /// `"schema"."table"`: quoted, so any name works (capitals, spaces,
    /// quotes) and none can inject SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.name)
        )
    }
}

/// An SQL identifier in double quotes, inner double quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An SQL string literal in single quotes, inner single quotes doubled
/// (`standard_conforming_strings` is on by default since PostgreSQL 9.1, so
/// backslashes are plain characters).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_so_any_name_is_safe() {
        let table = Table::new("my schema", "odd\"name");
        assert_eq!(table.to_string(), r#""my schema"."odd""name""#);
        assert_eq!(table.quoted_expiry_index(), r#""odd""name_expires_at""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
