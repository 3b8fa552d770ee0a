//! A tight replay loop to profile: `perf record` or `valgrind --tool=callgrind`
//! on `cargo run --release -p idempotent-bench --example profile_replay`.
//!
//! `profile_replay N` replays N times; `profile_replay N floor` runs the
//! memory bench's floor (JSON + SHA-256 of the same argument) N times
//! instead, so that the two can be compared by the CPU time the kernel
//! counts for each process (`perf stat -e task-clock`, `/usr/bin/time`),
//! which a machine loaded by other work inflates less than wall time.

use std::hint::black_box;

use idempotent_bench::{request, serialize_and_hash, ChargeRequest, Receipt};
use idempotent_core::{idempotent, Error, MemoryBackend};

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &MemoryBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    })
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000_000);
    if std::env::args().nth(2).as_deref() == Some("floor") {
        let req = request(1);
        let started = std::time::Instant::now();
        for _ in 0..calls {
            black_box(serialize_and_hash(black_box(&req)));
        }
        let per_call = started.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX);
        println!("{calls} floors, {per_call:?} per floor");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let store = MemoryBackend::new();
    let req = request(1);
    println!(
        "the future of one call is {} bytes",
        std::mem::size_of_val(&charge(&store, req.clone()))
    );
    runtime.block_on(async {
        charge(&store, req.clone()).await.expect("first run");
        let started = std::time::Instant::now();
        for _ in 0..calls {
            black_box(charge(&store, req.clone()).await.expect("replay"));
        }
        let per_call = started.elapsed() / u32::try_from(calls).unwrap_or(u32::MAX);
        println!("{calls} replays, {per_call:?} per replay");
    });
}
