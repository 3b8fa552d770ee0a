use idempotent_core::{idempotent, Error};

#[idempotent(skip(gateway))]
async fn charge(gatway: u8, amount: u64) -> Result<u64, Error> {
    let _ = gatway;
    Ok(amount)
}

fn main() {}
