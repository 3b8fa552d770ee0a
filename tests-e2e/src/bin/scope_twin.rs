//! The binary half of `scope_twin` (see `src/scope_twin.rs`): its own
//! `billing::refund`, a different function with the library's path. Prints
//! what each of the two returns for one key on the process default store.

mod billing {
    use idempotent_core::{idempotent, Error};

    /// The binary's refund: only logs a refund request.
    #[idempotent(key = order)]
    pub async fn refund(order: String) -> Result<String, Error> {
        Ok(format!("binary logged a refund request for {order}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let library = scope_twin::billing::refund("order-5".into()).await;
    let binary = billing::refund("order-5".into()).await;
    println!("library: {library:?}");
    println!("binary: {binary:?}");
}
