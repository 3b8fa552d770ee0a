//! The runtime every conformance test runs on.

use std::future::Future;
use std::time::Duration;

/// How long one conformance test may run before it fails as hung.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one conformance test: `future` on a fresh multi-thread Tokio runtime
/// (4 workers, time and I/O drivers enabled), failing the test if it does not
/// finish within 60 s. `test` names it in that failure.
///
/// [`conformance_tests!`](crate::conformance_tests) wraps every rule in it;
/// hand-written tests of a store can use it too, and then need no Tokio
/// dependency of their own.
///
/// ```
/// use idempotent_conformance::outputs;
/// use idempotent_core::MemoryBackend;
///
/// idempotent_conformance::run("too_large", async {
///     let backend = MemoryBackend::new().max_output_bytes(1024);
///     outputs::output_over_the_limit_is_too_large(&backend, 1024).await;
/// });
/// ```
pub fn run<F: Future>(test: &str, future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("conformance test `{test}`: no Tokio runtime: {error}"));
    runtime.block_on(async {
        match tokio::time::timeout(TEST_TIMEOUT, future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "conformance test `{test}` did not finish within {TEST_TIMEOUT:?}: \
                 a store operation hangs"
            ),
        }
    })
}
