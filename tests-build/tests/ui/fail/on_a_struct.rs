use idempotent_core::idempotent;

#[idempotent]
struct Charge {
    amount: u64,
}

fn main() {}
