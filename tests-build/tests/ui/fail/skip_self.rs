use idempotent_core::{idempotent, Error};

struct Payments;

impl Payments {
    #[idempotent(skip(self))]
    async fn charge(&self, amount: u64) -> Result<u64, Error> {
        Ok(amount)
    }
}

fn main() {}
