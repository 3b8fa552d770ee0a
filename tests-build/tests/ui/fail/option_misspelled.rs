// A misspelled option suggests the nearest one, and the options after it are
// still checked.
use idempotent_core::{idempotent, Error};

#[idempotent(tll = "1h", sope = "billing::charge", lease = "0s")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
