use idempotent_core::{idempotent, Error};

#[idempotent(timeout = "5s")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
