use idempotent_core::{idempotent, Error};

#[idempotent(key)]
async fn charge(order_id: String) -> Result<u64, Error> {
    let _ = order_id;
    Ok(1)
}

fn main() {}
