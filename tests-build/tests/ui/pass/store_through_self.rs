// `backend = &self.store` on every kind of receiver: `&self` borrows the
// store; `&mut self`, `self`, `mut self` and `self: Box<Self>` clone it out of
// `self` first, so the body may mutate or move `self`.
use idempotent_core::{idempotent, Backend, Error, MemoryBackend};
use std::sync::Arc;

struct Service {
    store: Arc<MemoryBackend>,
    shared: Arc<dyn Backend>,
    count: u64,
}

impl Service {
    #[idempotent(backend = &self.store)]
    async fn read(&self, id: u64) -> Result<u64, Error> {
        Ok(id + self.count)
    }

    #[idempotent(backend = &self.store)]
    async fn bump(&mut self, id: u64) -> Result<u64, Error> {
        self.count += id;
        Ok(self.count)
    }

    #[idempotent(backend = &self.shared)]
    async fn bump_dyn(&mut self, id: u64) -> Result<u64, Error> {
        self.count += id;
        Ok(self.count)
    }

    #[idempotent(backend = &self.store)]
    async fn finish(self, id: u64) -> Result<u64, Error> {
        let Service { count, .. } = self;
        Ok(count + id)
    }

    #[idempotent(backend = &self.store)]
    async fn finish_mut(mut self, id: u64) -> Result<u64, Error> {
        self.count += id;
        Ok(self.count)
    }

    #[idempotent(backend = &self.store)]
    async fn finish_boxed(self: Box<Self>, id: u64) -> Result<u64, Error> {
        Ok(self.count + id)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let service = || Service {
        store: Arc::new(MemoryBackend::new()),
        shared: Arc::new(MemoryBackend::new()),
        count: 1,
    };
    let mut one = service();
    assert_eq!(one.read(1).await.unwrap(), 2);
    assert_eq!(one.bump(2).await.unwrap(), 3);
    assert_eq!(one.bump_dyn(2).await.unwrap(), 5);
    assert_eq!(one.finish(1).await.unwrap(), 6);
    assert_eq!(service().finish_mut(1).await.unwrap(), 2);
    assert_eq!(Box::new(service()).finish_boxed(1).await.unwrap(), 2);
}
