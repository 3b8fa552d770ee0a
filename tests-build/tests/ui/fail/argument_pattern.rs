use idempotent_core::{idempotent, Error};

#[idempotent]
async fn charge((currency, amount): (String, u64)) -> Result<u64, Error> {
    let _ = currency;
    Ok(amount)
}

fn main() {}
