use idempotent_core::idempotent;

#[idempotent]
async fn charge(amount: u64) {
    let _ = amount;
}

fn main() {}
