//! `cargo bench -p idempotent-bench --bench allocations`: heap allocations
//! per call, counted by a global allocator that wraps the system one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use idempotent_bench::{request, ChargeRequest, Receipt};
use idempotent_core::{idempotent, Error, MemoryBackend};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &MemoryBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let store = MemoryBackend::new();
    const CALLS: u64 = 10_000;
    runtime.block_on(async {
        let req = request(1);
        charge(&store, req.clone()).await.expect("first run");
        let requests: Vec<ChargeRequest> = (0..CALLS).map(|_| req.clone()).collect();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for req in requests {
            black_box(charge(&store, req).await.expect("replay"));
        }
        let replay = ALLOCATIONS.load(Ordering::Relaxed) - before;

        let fresh: Vec<ChargeRequest> = (0..CALLS).map(|n| request(n + 10)).collect();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for req in fresh {
            black_box(charge(&store, req).await.expect("first run"));
        }
        let first_run = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "heap allocations per call on MemoryBackend: replay {:.2}, first run {:.2} \
             (the Receipt itself needs 1: its charge_id String)",
            replay as f64 / CALLS as f64,
            first_run as f64 / CALLS as f64
        );
    });
}
