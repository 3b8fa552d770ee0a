//! `cargo bench -p idempotent-bench --bench memory`: the cost of
//! `#[idempotent]` on the embedded store, against a plain call and against the
//! floor of serializing and hashing the argument.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use idempotent_bench::{payload, request, serialize_and_hash, ChargeRequest, Receipt};
use idempotent_core::backend::Fingerprint;
use idempotent_core::{idempotent, Error, Idempotency, MemoryBackend};

async fn plain(req: ChargeRequest) -> Result<Receipt, Error> {
    Ok(Receipt {
        charge_id: "ch_3MmlLrLkdIwHu7ix0snN0B15".into(),
        amount: req.amount,
    })
}

#[idempotent(key = req.idempotency_key, skip(store), backend = store, scope = "bench::charge")]
async fn charge(store: &MemoryBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    plain(req).await
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Runs `iters` calls inside one `block_on`, so the runtime's entry cost is
/// not part of a sub-microsecond measurement.
fn call_200_bytes(c: &mut Criterion) {
    let runtime = current_thread();
    // `first_run` stores a record per iteration and a full store refuses new
    // keys, so the bounds are far above what a run writes.
    let store = MemoryBackend::with_max_entries(10_000_000).with_max_bytes(usize::MAX);
    let req = request(1);
    runtime
        .block_on(charge(&store, req.clone()))
        .expect("first run");

    let mut group = c.benchmark_group("call_200B");
    group.bench_function("plain", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(plain(black_box(req.clone())).await.expect("ok"));
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("floor_serialize_sha256", |b| {
        b.iter(|| serialize_and_hash(black_box(&req)))
    });
    group.bench_function("replay", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(charge(&store, black_box(req.clone())).await.expect("ok"));
                }
                started.elapsed()
            })
        })
    });
    let next = AtomicU64::new(1_000_000);
    group.bench_function("first_run", |b| {
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters)
                .map(|_| request(next.fetch_add(1, Ordering::Relaxed)))
                .collect();
            runtime.block_on(async {
                let started = Instant::now();
                for req in requests {
                    black_box(charge(&store, req).await.expect("ok"));
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn hashing_by_size(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    for size in [200usize, 4 * 1024, 64 * 1024] {
        let value = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("canonical_sha256", size),
            &value,
            |b, v| b.iter(|| Fingerprint::of(black_box(v)).expect("hash")),
        );
        group.bench_with_input(
            BenchmarkId::new("json_then_sha256", size),
            &value,
            |b, v| b.iter(|| serialize_and_hash(black_box(v))),
        );
    }
    group.finish();
}

/// Replays per second with N tasks on a multi-thread runtime, all on one key
/// (one record, maximal contention) or each on its own key.
fn contention(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryBackend::with_max_entries(1_000_000));
    let mut group = c.benchmark_group("memory_contention");
    group.measurement_time(Duration::from_secs(3));
    for tasks in [1u64, 2, 4, 8] {
        for (name, distinct) in [("one_key", false), ("distinct_keys", true)] {
            let keys: Vec<String> = (0..tasks)
                .map(|task| format!("key-{}", if distinct { task } else { 0 }))
                .collect();
            runtime.block_on(async {
                for key in &keys {
                    let _ = replay(&store, key).await;
                }
            });
            group.throughput(Throughput::Elements(tasks));
            group.bench_function(BenchmarkId::new(name, tasks), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        let handles: Vec<_> = keys
                            .iter()
                            .map(|key| {
                                let (store, key) = (Arc::clone(&store), key.clone());
                                tokio::spawn(async move {
                                    for _ in 0..iters {
                                        black_box(replay(&store, &key).await.expect("ok"));
                                    }
                                })
                            })
                            .collect();
                        for handle in handles {
                            handle.await.expect("task");
                        }
                        started.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

async fn replay(store: &MemoryBackend, key: &str) -> Result<u64, Error> {
    Idempotency::new(store)
        .scope("bench::contention")
        .run(key, &7u64, || async { Ok(7u64) })
        .await
}

/// The same function without `scope = "..."`: its scope is resolved by the
/// definition's `static` on every call, so this is `replay` plus that cost.
#[idempotent(key = req.idempotency_key, skip(store), backend = store)]
async fn charge_default_scope(store: &MemoryBackend, req: ChargeRequest) -> Result<Receipt, Error> {
    plain(req).await
}

fn default_scope(c: &mut Criterion) {
    let runtime = current_thread();
    let store = MemoryBackend::new();
    let req = request(1);
    runtime
        .block_on(charge_default_scope(&store, req.clone()))
        .expect("first run");
    c.bench_function("call_200B/replay_default_scope", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let receipt = charge_default_scope(&store, black_box(req.clone())).await;
                    black_box(receipt.expect("ok"));
                }
                started.elapsed()
            })
        })
    });
}

criterion_group!(
    benches,
    call_200_bytes,
    hashing_by_size,
    contention,
    default_scope
);
criterion_main!(benches);
