//! The two drivers behind one set of names, so a suite written once runs on
//! both (see [`for_each_driver!`](crate::for_each_driver)): `Store`, its
//! driver's error `DbError`, and constructors on a [`TestDb`].
//!
//! In the transactional mode the body's handle differs (a
//! `tokio_postgres::Transaction`, a `&mut sqlx::PgConnection`); [`on_sqlx`]
//! gives sqlx's the two calls the suites make, `execute` and `query_one`,
//! with tokio-postgres' signatures.

use super::TestDb;

/// The tokio-postgres store.
pub mod on_tokio_postgres {
    use super::TestDb;
    use idempotent_postgres::deadpool_postgres::{Manager, Pool, Runtime};
    use idempotent_postgres::tokio_postgres::{self, NoTls};

    pub type Store = idempotent_postgres::PostgresBackend;
    pub type DbError = tokio_postgres::Error;
    /// What the transactional mode's body gets.
    pub type Tx<'a, 'b> = &'a tokio_postgres::Transaction<'b>;
    pub const DRIVER: &str = "tokio-postgres";
    /// The store's type name, as its errors say it.
    pub const STORE: &str = "PostgresBackend";

    /// A store on the database at `url`, default schema, not migrated.
    pub async fn store_at(url: &str) -> Store {
        Store::connect(url)
            .await
            .expect("connect to the test database")
    }

    /// A store on `db`'s schema, migrated.
    pub async fn store(db: &TestDb) -> Store {
        db.backend().await
    }

    /// A store on `schema` at `db`'s server that logs in as `user`; not
    /// migrated.
    pub fn store_as(db: &TestDb, user: &str, schema: &str) -> Store {
        let mut config: tokio_postgres::Config = db.url().parse().expect("a valid test URL");
        config.user(user);
        let pool = Pool::builder(Manager::new(config, NoTls))
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a pool");
        Store::from_pool(pool).with_schema(schema)
    }

    /// A store on `db`'s schema on a pool of `size` connections named
    /// `application_name`; not migrated.
    pub fn store_named(db: &TestDb, application_name: &str, size: usize) -> Store {
        store_named_at(db.url(), db.schema(), application_name, size)
    }

    /// [`store_named`] on `schema` at `url`.
    pub fn store_named_at(url: &str, schema: &str, application_name: &str, size: usize) -> Store {
        let mut config: tokio_postgres::Config = url.parse().expect("a valid test URL");
        config.application_name(application_name);
        let pool = Pool::builder(Manager::new(config, NoTls))
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a pool");
        Store::from_pool(pool).with_schema(schema)
    }
}

/// The sqlx store.
pub mod on_sqlx {
    use super::TestDb;
    use idempotent_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
    use idempotent_postgres::sqlx::{self, ColumnIndex, Decode, Executor, PgConnection, Row, Type};

    pub type Store = idempotent_postgres::SqlxBackend;
    pub type DbError = sqlx::Error;
    /// What the transactional mode's body gets (`'b` for the other driver's).
    pub type Tx<'a, 'b> = &'a mut PgConnection;
    pub const DRIVER: &str = "sqlx";
    /// The store's type name, as its errors say it.
    pub const STORE: &str = "SqlxBackend";

    fn options(url: &str) -> PgConnectOptions {
        url.parse().expect("a valid test URL")
    }

    /// A store on the database at `url`, default schema, not migrated.
    pub async fn store_at(url: &str) -> Store {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options(url))
            .await
            .expect("connect to the test database");
        Store::new(pool)
    }

    /// A store on `schema` at `db`'s server that logs in as `user`; not
    /// migrated.
    pub fn store_as(db: &TestDb, user: &str, schema: &str) -> Store {
        let pool = PgPoolOptions::new().connect_lazy_with(options(db.url()).username(user));
        Store::new(pool).with_schema(schema)
    }

    /// A store on `db`'s schema, migrated.
    pub async fn store(db: &TestDb) -> Store {
        let store = store_at(db.url()).await.with_schema(db.schema());
        store.migrate().await.expect("migrate the test schema");
        store
    }

    /// A store on `db`'s schema on a pool of `size` connections named
    /// `application_name`; not migrated. Lazy, as deadpool's: connections
    /// open when first used.
    pub fn store_named(db: &TestDb, application_name: &str, size: usize) -> Store {
        store_named_at(db.url(), db.schema(), application_name, size)
    }

    /// [`store_named`] on `schema` at `url`.
    pub fn store_named_at(url: &str, schema: &str, application_name: &str, size: usize) -> Store {
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(size).unwrap())
            .connect_lazy_with(options(url).application_name(application_name));
        Store::new(pool).with_schema(schema)
    }

    /// A row of [`TxExt::query_one`], read as tokio-postgres' rows are.
    pub struct TestRow(PgRow);

    impl TestRow {
        pub fn get<'r, I, T>(&'r self, index: I) -> T
        where
            I: ColumnIndex<PgRow>,
            T: Decode<'r, sqlx::Postgres> + Type<sqlx::Postgres>,
        {
            self.0.get(index)
        }
    }

    /// tokio-postgres' `execute` and `query_one` on the body's connection;
    /// the suites pass no parameters.
    pub trait TxExt {
        async fn execute(&mut self, sql: &str, params: &[&str]) -> Result<u64, sqlx::Error>;
        async fn query_one(&mut self, sql: &str, params: &[&str]) -> Result<TestRow, sqlx::Error>;
    }

    impl TxExt for PgConnection {
        async fn execute(&mut self, sql: &str, params: &[&str]) -> Result<u64, sqlx::Error> {
            assert!(params.is_empty(), "the suites' bodies take no parameters");
            let done =
                Executor::execute(self, sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))).await?;
            Ok(done.rows_affected())
        }

        async fn query_one(&mut self, sql: &str, params: &[&str]) -> Result<TestRow, sqlx::Error> {
            assert!(params.is_empty(), "the suites' bodies take no parameters");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(self)
                .await?;
            Ok(TestRow(row))
        }
    }
}

/// Runs the items given (tests and their helpers) once per driver: in a
/// module `on_tokio_postgres` and a module `on_sqlx`, each with the names of
/// [`drivers`](self) for its driver and the enclosing file's items.
#[macro_export]
macro_rules! for_each_driver {
    ($($suite:tt)*) => {
        mod on_tokio_postgres {
            #![allow(unused_imports)]
            use super::*;
            use $crate::support::drivers::on_tokio_postgres::*;
            $($suite)*
        }
        mod on_sqlx {
            #![allow(unused_imports)]
            use super::*;
            use $crate::support::drivers::on_sqlx::*;
            $($suite)*
        }
    };
}
