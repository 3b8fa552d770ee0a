// A duration is a string with a unit; a bare number says which to write.
use idempotent_core::{idempotent, Error};

#[idempotent(ttl = 3600, lease = "30")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

const DAY: &str = "24h";

#[idempotent(wait = DAY)]
async fn refund(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
