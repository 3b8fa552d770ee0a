//! Fencing tokens: chosen by the caller before it claims, so a claim whose
//! answer never arrives (the call was dropped, the reply was lost) can still
//! be released, and a claim retried by the transport recognises itself.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use crate::FencingToken;

/// A random starting point drawn from the OS once per process, so processes
/// on different machines draw unrelated tokens without any shared counter (a
/// global counter in a store would be a second key, which Redis Cluster
/// cannot update atomically with the record).
static SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(0x1de_u64));
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new token: this process's next sequence number, offset by its seed and
/// scrambled by a bijection, so a process never repeats a token (within
/// 2^64 claims) and two processes collide on one key with probability
/// 2^-64. No clock read and no hashing on the claim path.
pub(crate) fn next() -> FencingToken {
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    FencingToken::new(scramble(SEED.wrapping_add(sequence)))
}

/// The SplitMix64 finaliser: a bijection on `u64` that spreads consecutive
/// inputs over the whole range.
fn scramble(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_do_not_repeat() {
        let tokens: HashSet<_> = (0..100_000).map(|_| next()).collect();
        assert_eq!(tokens.len(), 100_000);
    }

    #[test]
    fn consecutive_tokens_differ_in_about_half_their_bits() {
        let (first, second) = (next().get(), next().get());
        let differing = (first ^ second).count_ones();
        assert!((16..=48).contains(&differing), "{first:x} vs {second:x}");
    }
}
