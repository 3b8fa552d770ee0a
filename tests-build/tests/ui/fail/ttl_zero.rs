use idempotent_core::{idempotent, Error};

#[idempotent(ttl = "0s")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
