//! Exactly once across processes: four OS processes, each with its own
//! `RedisBackend`, race 500 calls each over the same 50 keys on one private
//! redis-server. Every key's body runs once in total, and every caller of a
//! key gets the same result.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use idempotent_test_support::RedisServer;

const WORKERS: u32 = 4;
const CALLS_PER_WORKER: u32 = 500;
const KEYS: u32 = 50;
const CONCURRENCY_PER_WORKER: u32 = 16;

#[test]
fn four_processes_run_each_keys_body_exactly_once() {
    let server = RedisServer::start();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            Command::new(env!("CARGO_BIN_EXE_race-worker"))
                .args([
                    server.url(),
                    worker.to_string(),
                    CALLS_PER_WORKER.to_string(),
                    KEYS.to_string(),
                    CONCURRENCY_PER_WORKER.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a race-worker process")
        })
        .collect();

    let mut results: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut calls = 0;
    for worker in workers {
        let output = worker.wait_with_output().expect("race-worker output");
        assert!(
            output.status.success(),
            "a worker failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8(output.stdout).expect("utf-8").lines() {
            let (key, result) = line.split_once('\t').expect("key<TAB>result");
            assert!(!result.starts_with("ERROR"), "a call failed: {line}");
            results
                .entry(key.parse().expect("key"))
                .or_default()
                .insert(result.to_owned());
            calls += 1;
        }
    }

    assert_eq!(calls, WORKERS * CALLS_PER_WORKER, "every call answered");
    assert_eq!(results.len(), KEYS as usize, "every key was called");
    for (key, seen) in &results {
        assert_eq!(
            seen.len(),
            1,
            "key {key}: callers got different results {seen:?}"
        );
    }
    let executing_processes: BTreeSet<&str> = results
        .values()
        .flatten()
        .filter_map(|result| result.split(" pid ").nth(1)?.split(' ').next())
        .collect();
    assert!(
        executing_processes.len() >= 2,
        "the processes did not share the keys: {executing_processes:?}"
    );
    let mut total_runs = 0;
    for key in 0..KEYS {
        let runs: u64 = server.query(redis::cmd("GET").arg(format!("race:runs:{key}")));
        assert_eq!(
            runs, 1,
            "key {key}: the body ran {runs} times across processes"
        );
        total_runs += runs;
    }
    eprintln!(
        "cross-process: {WORKERS} processes x {CALLS_PER_WORKER} calls over {KEYS} keys \
         ({CONCURRENCY_PER_WORKER} concurrent per process): {calls} calls, {total_runs} body runs, \
         executed by {} processes",
        executing_processes.len()
    );
}
