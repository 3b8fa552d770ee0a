use idempotent_core::{idempotent, Error};

#[idempotent(ttl = "24 hours!")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
