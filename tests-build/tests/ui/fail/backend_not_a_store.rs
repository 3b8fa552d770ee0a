use idempotent_core::{idempotent, Error};

#[idempotent(backend = "redis://127.0.0.1")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
