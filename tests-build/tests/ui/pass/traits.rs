// In traits: on each impl's method, and on a default method (whose default
// scope names the implementing type, so implementors never share records).
use idempotent_core::{idempotent, Error};

trait Payments {
    async fn charge(&self, id: String, amount: u64) -> Result<u64, Error>;

    #[idempotent(key = id)]
    async fn refund(&self, id: String, amount: u64) -> Result<u64, Error> {
        Ok(amount)
    }
}

struct Card;

impl Payments for Card {
    #[idempotent(key = id)]
    async fn charge(&self, id: String, amount: u64) -> Result<u64, Error> {
        Ok(amount)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(Card.charge("c-1".into(), 5).await.unwrap(), 5);
    assert_eq!(Card.refund("r-1".into(), 3).await.unwrap(), 3);
}
