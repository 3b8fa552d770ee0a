//! Keys and fingerprints come from a canonical serialization.

mod support;

use std::collections::{BTreeMap, HashMap};

use idempotent_core::{idempotent, Error, Idempotency, MemoryBackend};
use support::Runs;

#[idempotent(skip(runs), scope = "tests::totals")]
async fn total(runs: &Runs, items: HashMap<String, u64>) -> Result<u64, Error> {
    runs.record();
    Ok(items.values().sum())
}

#[tokio::test]
async fn hashmap_insertion_order_never_changes_the_key_or_fingerprint() {
    let runs = Runs::default();
    let names: Vec<String> = (0..100).map(|index| format!("item-{index}")).collect();
    let forward: HashMap<String, u64> = names.iter().cloned().zip(0..100).collect();
    let backward: HashMap<String, u64> = names
        .iter()
        .cloned()
        .zip(0..100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(total(&runs, forward).await.unwrap(), 4950);
    assert_eq!(total(&runs, backward).await.unwrap(), 4950);
    assert_eq!(runs.count(), 1, "the second map is the same request");
}

#[tokio::test]
async fn a_200_kb_key_works_and_is_stored_under_a_bounded_key() {
    let store = MemoryBackend::new();
    let runs = Runs::default();
    let huge_key = "k".repeat(200 * 1024);
    let call = || Idempotency::new(&store).scope("tests::huge");
    let prepared = call().prepare(&huge_key, &1);
    let stored_key = prepared.stored_key().unwrap();
    assert_eq!(stored_key.len(), "tests::huge:".len() + 64);
    let body = || async { Ok::<_, Error>(runs.record()) };
    assert_eq!(prepared.run(body).await.unwrap(), 1);
    assert_eq!(call().run(&huge_key, &1, body).await.unwrap(), 1);
    let other_key = format!("{huge_key}!");
    assert_eq!(call().run(&other_key, &1, body).await.unwrap(), 2);
}

#[tokio::test]
async fn the_same_input_in_a_btreemap_and_a_hashmap_is_the_same_request() {
    let store = MemoryBackend::new();
    let runs = Runs::default();
    let call = || Idempotency::new(&store).scope("tests::maps");
    let body = || async { Ok::<_, Error>(runs.record()) };
    let hashed: HashMap<&str, i32> = [("b", 2), ("a", 1)].into_iter().collect();
    let ordered: BTreeMap<&str, i32> = [("a", 1), ("b", 2)].into_iter().collect();
    assert_eq!(call().run("key", &hashed, body).await.unwrap(), 1);
    assert_eq!(call().run("key", &ordered, body).await.unwrap(), 1);
}
