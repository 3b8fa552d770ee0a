// The message names the runtime as this crate names it (here through
// `crate = ".."`; a user of the `idempotency` facade reads `idempotency::Error`).
use idempotent_core as runtime;
use runtime::idempotent;

#[idempotent(crate = "runtime")]
async fn charge(amount: u64) {
    let _ = amount;
}

fn main() {}
