// A `&mut` argument would be hashed by its value before the body changes it:
// the retry would not match, and a replay would skip the change.
use idempotent_core::{idempotent, Error};

#[idempotent]
async fn append(log: &mut Vec<String>, line: String) -> Result<usize, Error> {
    log.push(line);
    Ok(log.len())
}

fn main() {}
