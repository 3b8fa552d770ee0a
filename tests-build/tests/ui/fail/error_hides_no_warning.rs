#![deny(unused_variables)]
use idempotent_core::{idempotent, Error};

// The only error is the attribute's: `order_id` is read by `key`, so no
// "unused variable" joins it.
#[idempotent(key = order_id, ttl = "24 hourz")]
async fn charge(order_id: String) -> Result<u64, Error> {
    Ok(1)
}

fn main() {}
