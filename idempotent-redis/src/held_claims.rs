//! The claims this process holds, as written: what `SET .. IFEQ` and
//! `DELIFEQ` compare the key with.
//!
//! A completion or a release is told only the key and the token, but the
//! plain commands need the whole claim record (its fingerprint and lease
//! too). The claim that acquired remembers it here, a renewal updates it,
//! the completion and the release take it out.
//!
//! Nothing here is trusted: the server compares every byte, so a record
//! that is not (or no longer) what the key holds makes the plain command
//! answer nil, and the call runs its script, which decides every case. A
//! claim not found here (never remembered, pruned, or taken by an earlier
//! try) goes to the script as well. So the table is bounded, and when it is
//! full of live claims a new one is simply not remembered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use idempotent_core::backend::FencingToken;

/// Shards, so that concurrent calls rarely wait on one lock.
const SHARDS: usize = 16;
/// Claims remembered per shard: 16 384 in all, about 3 MB with their keys.
const PER_SHARD: usize = 1024;

/// The claims in flight, by token.
#[derive(Debug)]
pub(crate) struct HeldClaims {
    shards: [Mutex<HashMap<u64, Held>>; SHARDS],
}

#[derive(Debug)]
struct Held {
    record_key: Box<str>,
    claim: Vec<u8>,
    /// When the server drops the key if nothing renews it: past that the
    /// record can only fail the comparison.
    key_expires_at: Instant,
}

impl HeldClaims {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn shard(&self, token: FencingToken) -> &Mutex<HashMap<u64, Held>> {
        // Tokens are random: their low bits spread evenly.
        &self.shards[(token.get() as usize) % SHARDS]
    }

    /// Remembers `claim`, just written at `record_key` for two leases.
    pub(crate) fn insert(
        &self,
        record_key: &str,
        token: FencingToken,
        claim: Vec<u8>,
        lease_ms: u64,
    ) {
        let now = Instant::now();
        let held = Held {
            record_key: record_key.into(),
            claim,
            key_expires_at: now + Duration::from_millis(lease_ms.saturating_mul(2)),
        };
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= PER_SHARD && !shard.contains_key(&token.get()) {
            // Claims whose calls never completed nor released (a process
            // that lost their replies) go first.
            shard.retain(|_, held| held.key_expires_at > now);
            if shard.len() >= PER_SHARD {
                return;
            }
        }
        shard.insert(token.get(), held);
    }

    /// The claim `token` holds at `record_key`, taken out.
    pub(crate) fn take(&self, record_key: &str, token: FencingToken) -> Option<Vec<u8>> {
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.get(&token.get()) {
            Some(held) if *held.record_key == *record_key => {
                shard.remove(&token.get()).map(|held| held.claim)
            }
            _ => None,
        }
    }

    /// A copy of the claim `token` holds at `record_key`.
    pub(crate) fn get(&self, record_key: &str, token: FencingToken) -> Option<Vec<u8>> {
        let shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(&token.get())
            .filter(|held| *held.record_key == *record_key)
            .map(|held| held.claim.clone())
    }

    /// After a renewal that wrote `claim` for two `lease_ms`: remembers it,
    /// unless the completion or the release took the claim out meanwhile.
    pub(crate) fn renewed(
        &self,
        record_key: &str,
        token: FencingToken,
        claim: Vec<u8>,
        lease_ms: u64,
    ) {
        let mut shard = self
            .shard(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = shard
            .get_mut(&token.get())
            .filter(|held| *held.record_key == *record_key)
        {
            held.claim = claim;
            held.key_expires_at =
                Instant::now() + Duration::from_millis(lease_ms.saturating_mul(2));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_taken_once_and_only_at_its_own_key() {
        let held = HeldClaims::new();
        let token = FencingToken::new(7);
        held.insert("k", token, b"claim".to_vec(), 1000);
        assert_eq!(held.take("other", token), None);
        assert_eq!(held.get("k", token), Some(b"claim".to_vec()));
        assert_eq!(held.take("k", token), Some(b"claim".to_vec()));
        assert_eq!(held.take("k", token), None);
    }

    #[test]
    fn a_renewal_after_the_take_does_not_bring_the_claim_back() {
        let held = HeldClaims::new();
        let token = FencingToken::new(7);
        held.insert("k", token, b"claim".to_vec(), 1000);
        held.renewed("k", token, b"renewed".to_vec(), 1000);
        assert_eq!(held.take("k", token), Some(b"renewed".to_vec()));
        held.renewed("k", token, b"again".to_vec(), 1000);
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_full_shard_drops_expired_claims_and_refuses_live_ones() {
        let held = HeldClaims::new();
        // Every token here lands in shard 0.
        let token = |n: u64| FencingToken::new(n * SHARDS as u64);
        for n in 0..PER_SHARD as u64 {
            held.insert("k", token(n), vec![1], 0);
        }
        // All of those expired at once (a zero lease): the next one fits.
        held.insert("k", token(PER_SHARD as u64), vec![2], 60_000);
        assert_eq!(held.len(), 1);
        for n in 0..PER_SHARD as u64 {
            held.insert("k", token(PER_SHARD as u64 + 1 + n), vec![3], 60_000);
        }
        assert_eq!(held.len(), PER_SHARD);
        assert_eq!(held.get("k", token(2 * PER_SHARD as u64)), None);
    }
}
