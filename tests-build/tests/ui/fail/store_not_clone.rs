// On a `&mut self` method the store is cloned out of `self` before the body
// runs, so a store borrowed from `self` must be `Clone`.
use idempotent_core::{idempotent, Backend, Error};

struct Service {
    store: Box<dyn Backend>,
    count: u64,
}

impl Service {
    #[idempotent(backend = &self.store)]
    async fn bump(&mut self, by: u64) -> Result<u64, Error> {
        self.count += by;
        Ok(self.count)
    }
}

fn main() {}
