use idempotent_core::{idempotent, Error};

// Too short to be renewed in time: duplicates would run beside a live call.
#[idempotent(lease = "2ms")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
