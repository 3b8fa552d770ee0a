//! Shared inputs of the benchmarks: a ~200-byte request like a payment API's.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A charge request whose JSON form is about 200 bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// The customer charged.
    pub customer: String,
    /// Amount in minor units.
    pub amount: u64,
    /// ISO currency code.
    pub currency: String,
    /// Free text shown on the statement.
    pub description: String,
}

/// The response stored and replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The provider's charge id.
    pub charge_id: String,
    /// Amount in minor units.
    pub amount: u64,
}

/// The request number `n`: same shape, distinct key.
pub fn request(n: u64) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: format!("8d6f0a4e-2f1c-4b7e-9a3d-{n:012}"),
        customer: "cus_NffrFeUfNV2Hib".into(),
        amount: 1999,
        currency: "eur".into(),
        description: "Order 4711: two tickets, seats 14A and 14B, Friday show".into(),
    }
}

/// The floor every fingerprinting scheme pays: serialize the argument and
/// SHA-256 the bytes.
pub fn serialize_and_hash<T: Serialize>(value: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

/// A string argument of `len` bytes, for hashing cost by size.
pub fn payload(len: usize) -> String {
    "abcdefghij".repeat(len / 10 + 1)[..len].to_owned()
}
