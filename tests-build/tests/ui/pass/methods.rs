// Methods with `&self` and `&mut self`, a store reached through `self`, and
// generated names that never collide with the user's arguments.
use idempotent_core::{idempotent, Error, MemoryBackend};
use std::sync::Arc;

struct Payments {
    store: MemoryBackend,
    shared: Arc<MemoryBackend>,
    charged: u64,
}

impl Payments {
    #[idempotent(backend = &self.store, scope = "payments::charge")]
    async fn charge(&self, amount: u64) -> Result<u64, Error> {
        Ok(amount)
    }

    // `&mut self` borrows the store by value through a cloned `Arc`.
    #[idempotent(backend = self.shared.clone(), scope = "payments::refund")]
    async fn refund(&mut self, amount: u64) -> Result<u64, Error> {
        self.charged -= amount;
        Ok(self.charged)
    }

    // Arguments named like the expansion's own locals still work.
    #[idempotent(key = key, scope = "payments::names")]
    async fn names(
        &self,
        key: String,
        backend: u8,
        fingerprint: u8,
        scope: u8,
        call: u8,
        output: u8,
    ) -> Result<String, Error> {
        Ok(format!("{key}{backend}{fingerprint}{scope}{call}{output}"))
    }

    // An associated function without a receiver.
    #[idempotent]
    async fn create(name: String) -> Result<String, Error> {
        Ok(name)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut payments = Payments {
        store: MemoryBackend::new(),
        shared: Arc::new(MemoryBackend::new()),
        charged: 10,
    };
    assert_eq!(payments.charge(5).await.unwrap(), 5);
    assert_eq!(payments.refund(3).await.unwrap(), 7);
    let joined = payments.names("k".into(), 1, 2, 3, 4, 5).await.unwrap();
    assert_eq!(joined, "k12345");
    assert_eq!(Payments::create("n".into()).await.unwrap(), "n");
}
