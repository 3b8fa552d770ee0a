use idempotent_core::{idempotent, Error};

#[idempotent(ttl = "1h", ttl = "2h")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
