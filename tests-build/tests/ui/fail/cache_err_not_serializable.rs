use idempotent_core::{idempotent, Error};

#[derive(Debug)]
enum ChargeError {
    Idempotency(Error),
    Declined,
}

impl From<Error> for ChargeError {
    fn from(error: Error) -> Self {
        ChargeError::Idempotency(error)
    }
}

#[idempotent(cache_err)]
async fn charge(amount: u64) -> Result<u64, ChargeError> {
    if amount == 0 {
        return Err(ChargeError::Declined);
    }
    Ok(amount)
}

fn main() {}
