// Arguments that are not hashed: a skipped `&mut`, and the receiver of a
// `&mut self` method; `impl Trait`, `mut` bindings and serializable
// wrappers (also of borrowed or generic values) are hashed as usual.
use idempotent_core::{idempotent, Error};
use serde::Serialize;

#[idempotent(key = id, skip(log))]
async fn append(id: u64, log: &mut Vec<u64>, mut extra: u64) -> Result<usize, Error> {
    extra += id;
    log.push(extra);
    Ok(log.len())
}

#[idempotent(key = id)]
async fn total(id: u64, items: impl IntoIterator<Item = u32> + Serialize) -> Result<u32, Error> {
    let _ = id;
    Ok(items.into_iter().sum())
}

#[derive(Serialize)]
struct Tagged<T>(T);

#[idempotent]
async fn tagged<'a, T: Serialize>(name: Tagged<&'a str>, value: Tagged<T>) -> Result<usize, Error> {
    let _ = value;
    Ok(name.0.len())
}

struct Counter(u64);

impl Counter {
    #[idempotent]
    async fn bump(&mut self, by: u64) -> Result<u64, Error> {
        self.0 += by;
        Ok(self.0)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut log = Vec::new();
    assert_eq!(append(1, &mut log, 1).await.unwrap(), 1);
    assert_eq!(append(1, &mut log, 1).await.unwrap(), 1, "replayed");
    assert_eq!(log, [2]);
    assert_eq!(total(1, [1, 2]).await.unwrap(), 3);
    assert_eq!(tagged(Tagged("ab"), Tagged(1)).await.unwrap(), 2);
    let mut counter = Counter(0);
    assert_eq!(counter.bump(2).await.unwrap(), 2);
}
