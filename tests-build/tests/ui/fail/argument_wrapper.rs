// A wrapper around the request that is not `Serialize` itself, as a web
// framework's `Json<T>` extractor: the note names the value inside to hash.
use idempotent_core::{idempotent, Error};
use serde::Serialize;

/// Stands for a foreign extractor: it wraps a `Serialize` value but does not
/// implement `Serialize`.
pub struct Json<T>(pub T);

#[derive(Serialize)]
pub struct Order {
    id: String,
    amount: u64,
}

#[idempotent]
async fn place(body: Json<Order>) -> Result<u64, Error> {
    Ok(body.0.amount)
}

fn main() {}
