use idempotent_core::{idempotent, Error};

struct Receipt {
    amount: u64,
}

#[idempotent]
async fn charge(amount: u64) -> Result<Receipt, Error> {
    Ok(Receipt { amount })
}

fn main() {}
