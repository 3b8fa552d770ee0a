//! The durations an idempotent call accepts, checked before anything is
//! claimed: a zero lease would let duplicates run at once, a ttl no store
//! can keep would fail at the completion, after the body ran.

use std::time::Duration;

use crate::Error;

/// The shortest ttl or wait: 1 ms, the stores' resolution (Redis and
/// Postgres count whole milliseconds).
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// The shortest lease: 250 ms. A live call keeps its claim by renewing it
/// every `lease / 3`, so each renewal must land within two thirds of a lease
/// of the last, whatever the timer's granularity, a busy runtime and the
/// store's latency; a few milliseconds cannot promise that, and a lapsed
/// lease lets a duplicate run the body while the first still runs. At
/// 250 ms the margin is about 167 ms.
pub const MIN_LEASE: Duration = Duration::from_millis(250);
/// The longest ttl: 3650 days (humantime's `10y` is 3652.5 days: write
/// `3650d`).
pub const MAX_TTL: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// The longest lease: 1 day. The lease bounds how long a crashed holder
/// blocks its key, not how long a body may run (renewal keeps a live one).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest wait for a running duplicate: 1 day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The smallest output limit a store may be configured with: 16 bytes. The
/// marker of a body whose result could not be stored is shorter, so it fits
/// whatever refused the result.
pub const MIN_OUTPUT_LIMIT: usize = 16;

/// Checks a `ttl`.
pub fn check_ttl(ttl: Duration) -> Result<Duration, Error> {
    check("ttl", ttl, MIN_DURATION, MAX_TTL)
}

/// Checks a `lease`.
pub fn check_lease(lease: Duration) -> Result<Duration, Error> {
    check("lease", lease, MIN_LEASE, MAX_LEASE)
}

/// Checks a `wait`.
pub fn check_wait(wait: Duration) -> Result<Duration, Error> {
    check("wait", wait, MIN_DURATION, MAX_WAIT)
}

// Inlined, with the error built out of line: every call checks its ttl and
// lease, and the message's formatting is for the rare call that fails.
#[inline]
fn check(option: &str, value: Duration, min: Duration, max: Duration) -> Result<Duration, Error> {
    if value < min || value > max {
        return Err(out_of_bounds(option, value, min, max));
    }
    Ok(value)
}

#[cold]
fn out_of_bounds(option: &str, value: Duration, min: Duration, max: Duration) -> Error {
    let reason = if value < min {
        format!("`{option}` must be at least {min:?}, got {value:?}")
    } else {
        format!(
            "`{option}` must be at most {} ({max:?}), got {value:?}",
            humanize(max)
        )
    };
    Error::InvalidConfig { reason }
}

fn humanize(duration: Duration) -> String {
    const DAY: u64 = 24 * 60 * 60;
    match duration.as_secs() {
        DAY => "1 day".to_owned(),
        secs if secs % DAY == 0 && secs > DAY => format!("{} days", secs / DAY),
        _ => format!("{duration:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `idempotent-macros` checks literals against the same figures (it
    /// cannot name these constants) and pins them in a test of its own.
    #[test]
    fn figures_shared_with_the_macro() {
        assert_eq!((MIN_DURATION.as_millis(), MIN_LEASE.as_millis()), (1, 250));
        assert_eq!(MAX_TTL.as_secs(), 3650 * 86_400);
        assert_eq!((MAX_LEASE.as_secs(), MAX_WAIT.as_secs()), (86_400, 86_400));
    }

    #[test]
    fn bounds_are_inclusive_and_named_in_the_error() {
        assert!(check_ttl(MIN_DURATION).is_ok());
        assert!(check_ttl(MAX_TTL).is_ok());
        assert!(check_lease(MAX_LEASE).is_ok());
        assert!(check_lease(MIN_LEASE).is_ok());
        for (error, words) in [
            (
                check_ttl(Duration::ZERO),
                "`ttl` must be at least 1ms, got 0ns",
            ),
            (
                check_lease(MIN_LEASE - Duration::from_millis(1)),
                "`lease` must be at least 250ms, got 249ms",
            ),
            (
                check_ttl(MAX_TTL + Duration::from_nanos(1)),
                "at most 3650 days",
            ),
            (check_wait(Duration::MAX), "`wait` must be at most 1 day"),
        ] {
            let error = error.unwrap_err().to_string();
            assert!(error.contains(words), "{error}");
        }
    }
}
