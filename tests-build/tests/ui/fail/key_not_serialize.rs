use idempotent_core::{idempotent, Error};

struct RequestId(u64);

#[idempotent(key = id, skip(id))]
async fn charge(id: RequestId, amount: u64) -> Result<u64, Error> {
    let _ = id.0;
    Ok(amount)
}

fn main() {}
