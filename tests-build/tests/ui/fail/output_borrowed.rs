use idempotent_core::{idempotent, Error};

// Replayed from the store, so the result must own its data.
#[idempotent]
async fn greeting(name: String) -> Result<&'static str, Error> {
    let _ = name;
    Ok("hello")
}

fn main() {}
