//! Where the records live: a schema and a table, quoted for SQL.

use std::fmt;

/// The default schema: where unqualified tables go in a new database.
pub const DEFAULT_SCHEMA: &str = "public";
/// The default table. Not `idempotency_keys`, the name hand-written versions
/// of this pattern tend to use, so `migrate` never adopts such a table.
pub const DEFAULT_TABLE: &str = "idempotent_records";

/// The longest identifier PostgreSQL keeps: `NAMEDATALEN - 1` bytes. It cuts
/// longer ones to this length (with only a `NOTICE`), so two long names
/// that share their first 63 bytes would name one table.
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// The suffix of the expiry index's name.
const INDEX_SUFFIX: &str = "_expires_at";

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

    /// Refuses a schema or table name PostgreSQL would cut short.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (what, name) in [("schema", &self.schema), ("table", &self.name)] {
            if name.len() > MAX_IDENTIFIER_BYTES {
                return Err(format!(
                    "the {what} name {name:?} is {} bytes; PostgreSQL keeps at most \
                     {MAX_IDENTIFIER_BYTES} bytes of a name and would silently cut it, so \
                     choose a shorter one with with_{what}",
                    name.len()
                ));
            }
        }
        Ok(())
    }

    /// The name of the index on `expires_at`, quoted, unqualified (an index
    /// lives in its table's schema).
    ///
    /// `{table}_expires_at` when that fits in 63 bytes. Otherwise the
    /// table's name is cut (on a character boundary) and a hash of the whole
    /// name added, so the index name fits, differs from the table's own name
    /// (which `CREATE INDEX IF NOT EXISTS` would take for the index and skip
    /// it), and differs between tables whose names share a prefix.
    pub(crate) fn quoted_expiry_index(&self) -> String {
        quote_ident(&self.expiry_index())
    }

    fn expiry_index(&self) -> String {
        let whole = format!("{}{INDEX_SUFFIX}", self.name);
        if whole.len() <= MAX_IDENTIFIER_BYTES {
            return whole;
        }
        let hash = format!("_{:08x}", fnv1a(self.name.as_bytes()) as u32);
        let mut room = MAX_IDENTIFIER_BYTES - hash.len() - INDEX_SUFFIX.len();
        while !self.name.is_char_boundary(room) {
            room -= 1;
        }
        format!("{}{hash}{INDEX_SUFFIX}", &self.name[..room])
    }
}

/// 64-bit FNV-1a: a hash that is the same in every process and version.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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

    #[test]
    fn expiry_index_names_fit_and_stay_distinct() {
        let short = Table::new("s", "records");
        assert_eq!(short.expiry_index(), "records_expires_at");
        let fits = "t".repeat(MAX_IDENTIFIER_BYTES - INDEX_SUFFIX.len());
        assert_eq!(
            Table::new("s", fits.clone()).expiry_index(),
            format!("{fits}_expires_at")
        );
        let mut seen = std::collections::HashSet::new();
        for name in [
            "t".repeat(fits.len() + 1),
            "t".repeat(63),
            format!("{}u", "t".repeat(62)),
            format!("{}é", "t".repeat(61)),
            "é".repeat(31),
        ] {
            let index = Table::new("s", name.clone()).expiry_index();
            assert!(index.len() <= MAX_IDENTIFIER_BYTES, "{index}");
            assert!(index.ends_with(INDEX_SUFFIX), "{index}");
            assert_ne!(index, name);
            assert!(seen.insert(index.clone()), "{index} twice");
        }
    }

    #[test]
    fn names_postgres_would_cut_are_refused() {
        assert!(Table::new("s".repeat(63), "t".repeat(63)).check().is_ok());
        let error = Table::new("s", "t".repeat(64)).check().unwrap_err();
        assert!(
            error.contains("table name") && error.contains("64 bytes"),
            "{error}"
        );
        let error = Table::new("é".repeat(32), "t").check().unwrap_err();
        assert!(
            error.contains("schema name") && error.contains("with_schema"),
            "{error}"
        );
    }
}
