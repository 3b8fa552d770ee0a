use idempotent_core::idempotent;

#[idempotent]
async fn charge(amount: u64) -> u64 {
    amount
}

fn main() {}
