use idempotent_core::{idempotent, Error};

#[idempotent(key = request_id)]
async fn charge(req_id: String, amount: u64) -> Result<u64, Error> {
    let _ = req_id;
    Ok(amount)
}

fn main() {}
