//! The builder methods both stores share, written once: where the records
//! are and the limits on each operation. Each store keeps its own
//! constructors, `pool()`, `migrate()` and `with_prepared_statements`, whose
//! behavior differs by driver.

/// Implements the shared builder methods on a store with a `settings:
/// Settings` field.
macro_rules! builder_methods {
    ($store:ident) => {
        impl $store {
            /// Keeps the records in `schema` (default `public`). Names are quoted:
            /// any name works, as written (`"Billing"` is not `billing`), up to
            /// PostgreSQL's 63 bytes. A longer one, which PostgreSQL would silently
            /// cut, is refused: [`migrate`](Self::migrate) and every operation fail
            /// with an error saying so.
            #[must_use]
            pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
                self.settings = self.settings.with_schema(schema.into());
                self
            }

            /// Keeps the records in the table `table` (default `idempotent_records`);
            /// names longer than 63 bytes are refused, as for
            /// [`with_schema`](Self::with_schema). The expiry index's name is derived
            /// from it and always fits.
            #[must_use]
            pub fn with_table(mut self, table: impl Into<String>) -> Self {
                self.settings = self.settings.with_table(table.into());
                self
            }

            /// Sets the largest output [`complete`](idempotent_core::Backend::complete)
            /// stores, in bytes (default 1 MiB); larger ones fail with
            /// [`BackendErrorKind::TooLarge`](idempotent_core::BackendErrorKind::TooLarge).
            #[must_use]
            pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
                self.settings.max_output_bytes = bytes;
                self
            }

            /// Sets how long one store operation may take, waiting for a pooled
            /// connection included (default 5 s). Past it the operation fails with
            /// an `Unavailable` error and has not applied: the server is told to
            /// stop the statement by then too (a `statement_timeout` set for that
            /// statement alone), so a claim waiting on a lock cannot land later.
            #[must_use]
            pub fn with_operation_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.settings.operation_timeout = timeout;
                self
            }

            /// The records table, quoted and schema-qualified: `"public"."idempotent_records"`.
            pub fn table_name(&self) -> String {
                self.settings.table.to_string()
            }

            /// The DDL [`migrate`](Self::migrate) runs, for migration tools that
            /// keep their own history (refinery, sqlx's `migrate!`, ...): the
            /// schema, the table, its index. Every statement is `IF NOT EXISTS`.
            pub fn migration_sql(&self) -> String {
                $crate::migrate::ddl(&self.settings.table)
            }

            pub(crate) fn operation_timeout(&self) -> std::time::Duration {
                self.settings.operation_timeout
            }
        }
    };
}
pub(crate) use builder_methods;
