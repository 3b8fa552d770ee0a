// A trait method declaration has no body to run once: the attribute goes on
// the method in each `impl` of the trait.
use idempotent_core::{idempotent, Error};

trait Payments {
    #[idempotent(key = id)]
    async fn charge(&self, id: String, amount: u64) -> Result<u64, Error>;
}

fn main() {}
