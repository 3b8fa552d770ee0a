//! The checks' clock. Real time: a store's clock (a Redis server's) cannot be
//! paused, so the checks sleep for real.

use std::time::Duration;

/// The short lease of the expiry rules.
pub(crate) const LEASE: Duration = Duration::from_secs(1);
/// Past [`LEASE`] but well before twice it: the claim is expired but kept.
pub(crate) const PAST_LEASE: Duration = Duration::from_millis(1400);
/// Well past twice [`LEASE`]: an abandoned claim is forgotten.
pub(crate) const PAST_TWICE_LEASE: Duration = Duration::from_millis(2500);
/// A lease that never runs out during a check.
pub(crate) const LONG_LEASE: Duration = Duration::from_secs(30);
/// A ttl that never runs out during a check, yet cleans up shared stores.
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// The short ttl of the expiry rule.
pub(crate) const SHORT_TTL: Duration = Duration::from_secs(1);
/// Past [`SHORT_TTL`].
pub(crate) const PAST_SHORT_TTL: Duration = Duration::from_millis(1500);
/// Slack allowed on top of a bound a store must meet.
pub(crate) const MARGIN: Duration = Duration::from_secs(2);
/// How long `release_in_background` may take to take effect.
pub(crate) const BACKGROUND_BOUND: Duration = Duration::from_secs(5);
