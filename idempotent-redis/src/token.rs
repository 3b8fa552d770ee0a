//! Fencing tokens for Redis claims.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use idempotent_core::FencingToken;

/// Seeded from the OS once per process, so processes on different machines
/// draw unrelated tokens without any shared counter (a global counter in
/// Redis would be a second key, which Redis Cluster cannot update atomically
/// with the record).
static SEED: LazyLock<RandomState> = LazyLock::new(RandomState::new);
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new token: a keyed hash of this process's sequence number and the wall
/// clock. Two claims of one key collide with probability 2^-64.
pub(crate) fn new_token() -> FencingToken {
    let mut hasher = SEED.build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    FencingToken::new(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_do_not_repeat() {
        let tokens: HashSet<_> = (0..100_000).map(|_| new_token()).collect();
        assert_eq!(tokens.len(), 100_000);
    }
}
