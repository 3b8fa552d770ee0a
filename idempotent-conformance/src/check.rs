//! A check's context: the rule it checks, the store, keys unique to the check
//! and the run, and store calls that fail the rule (with what was observed)
//! instead of returning errors.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idempotent_core::backend::{Backend, CasOutcome, ClaimOutcome, FencingToken, Fingerprint};

use crate::show::{Show, ShowBytes};
use crate::timing::{LONG_LEASE, TTL};

pub(crate) fn fp(value: &str) -> Fingerprint {
    Fingerprint::of(value).expect("a string always serializes")
}

/// Identifies this process's run, so keys never collide with those of an
/// earlier run against the same (shared, persistent) store.
fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("{:x}-{nanos:x}", std::process::id())
    })
}

/// One check in progress: the rule it checks, the store, and its keys.
pub(crate) struct Check<'b, B: ?Sized> {
    rule: &'static str,
    pub(crate) backend: &'b B,
    prefix: String,
}

impl<'b, B: Backend + ?Sized> Check<'b, B> {
    pub(crate) fn new(rule: &'static str, backend: &'b B) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        Self {
            rule,
            backend,
            prefix: format!("idempotent-conformance:{}:{seq}:{rule}", run_id()),
        }
    }

    /// A key unique to this check (and run), named `name`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub(crate) fn fail(&self, step: &str, expected: &str, observed: impl Debug) -> ! {
        panic!(
            "conformance rule `{}` failed: {step}: expected {expected}, observed {observed:?}",
            self.rule
        )
    }

    pub(crate) async fn claim(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: FencingToken,
        lease: Duration,
    ) -> ClaimOutcome {
        match self.backend.claim(key, fingerprint, token, lease).await {
            Ok(ClaimOutcome::Acquired { token: echoed, .. }) if echoed != token => self.fail(
                &format!("claim({key:?}, {token:?}, lease {lease:?})"),
                "Acquired with the caller's token",
                echoed,
            ),
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("claim({key:?}, lease {lease:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    pub(crate) async fn complete(
        &self,
        key: &str,
        token: FencingToken,
        output: &[u8],
        ttl: Duration,
    ) -> CasOutcome {
        match self.backend.complete(key, token, output, ttl).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!(
                    "complete({key:?}, {token:?}, output of {} bytes, ttl {ttl:?})",
                    output.len()
                ),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    pub(crate) async fn release(&self, key: &str, token: FencingToken) -> CasOutcome {
        match self.backend.release(key, token).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("release({key:?}, {token:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    pub(crate) async fn renew(
        &self,
        key: &str,
        token: FencingToken,
        lease: Duration,
    ) -> CasOutcome {
        match self.backend.renew(key, token, lease).await {
            Ok(outcome) => outcome,
            Err(error) => self.fail(
                &format!("renew({key:?}, {token:?}, lease {lease:?})"),
                "an outcome",
                format_args!("Err({error})"),
            ),
        }
    }

    /// Asserts that a compare-and-set had the `expected` outcome.
    pub(crate) fn expect_cas(&self, step: &str, observed: CasOutcome, expected: CasOutcome) {
        if observed != expected {
            self.fail(step, &format!("{expected:?}"), observed);
        }
    }

    /// Claims `key` and asserts it was absent: `Acquired { took_over: false }`.
    pub(crate) async fn expect_fresh(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> FencingToken {
        match self
            .claim(key, fingerprint, FencingToken::generate(), lease)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: false,
            } => token,
            other => self.fail(step, "Acquired { took_over: false, .. }", Show(&other)),
        }
    }

    /// Claims `key` and asserts a takeover: `Acquired { took_over: true }`.
    pub(crate) async fn expect_takeover(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> FencingToken {
        match self
            .claim(key, fingerprint, FencingToken::generate(), lease)
            .await
        {
            ClaimOutcome::Acquired {
                token,
                took_over: true,
            } => token,
            other => self.fail(step, "Acquired { took_over: true, .. }", Show(&other)),
        }
    }

    /// Claims `key` and asserts a live claim: `InProgress` with
    /// `0 < lease_remaining <= at_most`.
    pub(crate) async fn expect_in_progress(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        at_most: Duration,
    ) -> Duration {
        match self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::InProgress { lease_remaining }
                if !lease_remaining.is_zero() && lease_remaining <= at_most =>
            {
                lease_remaining
            }
            other => self.fail(
                step,
                &format!(
                    "InProgress {{ lease_remaining }} with 0 < lease_remaining <= {at_most:?}"
                ),
                Show(&other),
            ),
        }
    }

    /// Claims `key` and asserts `Mismatch`.
    pub(crate) async fn expect_mismatch(&self, step: &str, key: &str, fingerprint: &Fingerprint) {
        let outcome = self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await;
        if outcome != ClaimOutcome::Mismatch {
            self.fail(step, "Mismatch", Show(&outcome));
        }
    }

    /// Claims `key` and asserts a replay of exactly `expected`.
    pub(crate) async fn expect_completed(
        &self,
        step: &str,
        key: &str,
        fingerprint: &Fingerprint,
        expected: &[u8],
    ) {
        match self
            .claim(key, fingerprint, FencingToken::generate(), LONG_LEASE)
            .await
        {
            ClaimOutcome::Completed { output } if output == expected => {}
            ClaimOutcome::Completed { output } => {
                let first_difference = output
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(output.len().min(expected.len()));
                self.fail(
                    step,
                    &format!("Completed {{ output: {} }}", ShowBytes(expected)),
                    format_args!(
                        "Completed {{ output: {} }}, first difference at byte {first_difference}",
                        ShowBytes(&output)
                    ),
                )
            }
            other => self.fail(
                step,
                &format!("Completed {{ output: {} }}", ShowBytes(expected)),
                Show(&other),
            ),
        }
    }

    /// Claims a fresh `key`, completes it with `output` and checks the replay.
    pub(crate) async fn round_trip(&self, name: &str, output: &[u8]) {
        let key = self.key(name);
        let a = fp("a");
        let token = self
            .expect_fresh(
                &format!("claim of the fresh key {name:?}"),
                &key,
                &a,
                LONG_LEASE,
            )
            .await;
        let completed = self.complete(&key, token, output, TTL).await;
        self.expect_cas(
            &format!("complete {name:?} with {}", ShowBytes(output)),
            completed,
            CasOutcome::Applied,
        );
        self.expect_completed(&format!("replay of {name:?}, byte-exact"), &key, &a, output)
            .await;
    }
}
