// `require_key` checks that the `key = ...` value is present; without a key
// the fingerprint is the key, which is never missing.
use idempotent_core::{idempotent, Error};

#[idempotent(require_key)]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
