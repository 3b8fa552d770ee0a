// Skipping a name bound inside a destructured argument gives one error, at the
// pattern, saying how to skip it.
use idempotent_core::{idempotent, Error};

pub struct State<T>(pub T);
pub struct Db;

#[idempotent(skip(db))]
async fn charge(State(db): State<Db>, amount: u64) -> Result<u64, Error> {
    let _ = db;
    Ok(amount)
}

#[idempotent]
async fn refund(_: State<Db>, amount: u64) -> Result<u64, Error> {
    Ok(amount)
}

fn main() {}
