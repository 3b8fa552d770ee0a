use idempotent_core::{idempotent, Error};

// Beyond what any store keeps, or below its millisecond resolution.
#[idempotent(ttl = "11years", lease = "2days", wait = "500us")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
