//! The backend conformance suite on Postgres, on each driver: each rule in a
//! schema of its own, on one private server for the binary (or
//! `DATABASE_URL`).

mod support;

use support::TestDb;

for_each_driver! {
    idempotent_conformance::conformance_tests!(|| async {
        let db = TestDb::new();
        let backend = store(&db).await;
        (backend, db)
    });

    /// The output limit is the store's own setting, so this rule runs by hand.
    #[test]
    fn an_output_over_the_configured_limit_is_too_large() {
        idempotent_conformance::run("output_over_the_limit_is_too_large", async {
            let db = TestDb::new();
            let backend = store(&db).await.with_max_output_bytes(1024);
            idempotent_conformance::outputs::output_over_the_limit_is_too_large(&backend, 1024)
                .await;
        });
    }
}
