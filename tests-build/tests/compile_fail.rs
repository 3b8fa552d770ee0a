//! The macro's promises at compile time: what compiles, and every diagnostic
//! it gives for a mistake (`tests/ui/fail/*.stderr`; regenerate with
//! `TRYBUILD=overwrite` and review the diff).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
