use idempotent_core::{idempotent, Error};

struct Gateway;

#[idempotent]
async fn charge(gateway: &Gateway, amount: u64) -> Result<u64, Error> {
    let _ = gateway;
    Ok(amount)
}

fn main() {}
