// Every mistake of one attribute is reported at once.
use idempotent_core::{idempotent, Error};

#[idempotent(ttl = "forever", lease = "0s", skip(nothing), scope = "a", scope = "b")]
async fn charge(amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
