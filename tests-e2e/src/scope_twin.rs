//! The library half of a library and a binary whose crates are both named
//! `scope_twin` (`src/bin/scope_twin.rs`): same-named functions in the two
//! crates have the same path, and `tests/function_identity.rs` checks that
//! they still never share a record.

/// Refunds.
pub mod billing {
    use idempotent_core::{idempotent, Error};

    /// The library's refund: refunds the order.
    #[idempotent(key = order)]
    pub async fn refund(order: String) -> Result<String, Error> {
        Ok(format!("library refunded {order}"))
    }
}
