// A `String` cannot carry an idempotency error, and no variant can be added
// to it: the note says to use an error enum.
use idempotent_core::idempotent;

#[idempotent]
async fn charge(amount: u64) -> Result<u64, String> {
    if amount == 0 {
        return Err("declined".into());
    }
    Ok(amount)
}

fn main() {}
