use idempotent_core::idempotent;

#[derive(Debug)]
enum ChargeError {
    Declined,
}

#[idempotent]
async fn charge(amount: u64) -> Result<u64, ChargeError> {
    if amount == 0 {
        return Err(ChargeError::Declined);
    }
    Ok(amount)
}

fn main() {}
