// Generic functions, lifetimes, borrowed arguments and `impl Trait` arguments.
use idempotent_core::{idempotent, Error};
use serde::{de::DeserializeOwned, Serialize};

#[idempotent]
async fn echo<T>(value: T) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned + Send,
{
    Ok(value)
}

#[idempotent]
async fn borrowed<'a>(name: &'a str, bytes: &'a [u8]) -> Result<usize, Error> {
    Ok(name.len() + bytes.len())
}

#[idempotent(key = id)]
async fn with_impl_trait(id: u64, items: impl IntoIterator<Item = u32> + Serialize) -> Result<u32, Error> {
    let _ = id;
    Ok(items.into_iter().sum())
}

#[idempotent]
async fn generic_error<E>(value: u8) -> Result<u8, E>
where
    E: From<Error>,
{
    Ok(value)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(echo(String::from("x")).await.unwrap(), "x");
    assert_eq!(borrowed("ab", &[1, 2, 3]).await.unwrap(), 5);
    assert_eq!(with_impl_trait(1, vec![1, 2]).await.unwrap(), 3);
    assert_eq!(generic_error::<Error>(7).await.unwrap(), 7);
}
