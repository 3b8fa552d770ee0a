//! The model-based checker of the one promise: per key, a body runs at most
//! once per claim epoch (again only once its claim was lost), and no caller
//! gets a result that is neither its own run's nor the stored one.
//!
//! Each test draws random schedules (proptest): calls on a few keys that
//! overlap, wait, panic, fail and are dropped at random points; store faults
//! (refused, applied with the answer lost, late); pauses that let leases run
//! out. Each schedule runs on tokio's paused clock through the public runtime
//! API, on a `MemoryBackend` behind a fault-injecting wrapper, and every store
//! operation, body and answer is checked against a reference model
//! (`support/model.rs`). A failure prints the seed, how many schedules ran,
//! the schedule shrunk to its essentials and that schedule's timeline.
//!
//! - `MODEL_SEED=<n>` replays a run (a failure prints its seed);
//! - `MODEL_CASES=<n>` sets how many schedules each test draws;
//! - `cargo test -p idempotent-core --test model_check -- --ignored` runs the
//!   soak: many more schedules, from a fresh seed unless `MODEL_SEED` is set.

mod support;

use std::cell::Cell;
use std::fmt::Write as _;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use support::exec;
use support::schedule::{
    schedules, BodyEnd, BodyPlan, CallPlan, Checks, Effect, Fault, Op, Profile, Schedule, Step,
    Store,
};

/// The seed of the ordinary run: fixed, so a red build is red for everyone.
const DEFAULT_SEED: u64 = 11;
/// Schedules per test in the ordinary run.
const CASES: u32 = 2_000;
/// Schedules per test in the soak.
const SOAK_CASES: u32 = 200_000;

const DEFAULT_STORE: Store = Store {
    max_entries: None,
    max_output_bytes: None,
};

const SAFETY_CHECKS: Checks = Checks {
    safety: true,
    orphans_of_dropped_calls: false,
    orphans_of_failed_claims: false,
};

const ORPHAN_CHECKS: Checks = Checks {
    safety: false,
    orphans_of_dropped_calls: false,
    orphans_of_failed_claims: false,
};

/// The one invariant, on a store with room to spare.
const SAFETY: Profile = Profile {
    store: DEFAULT_STORE,
    checks: SAFETY_CHECKS,
};

/// The one invariant, on a store too small for the keys in use.
const FULL_STORE: Profile = Profile {
    store: Store {
        max_entries: Some(2),
        ..DEFAULT_STORE
    },
    checks: SAFETY_CHECKS,
};

/// The one invariant, on a store that refuses the big outputs.
const SMALL_OUTPUTS: Profile = Profile {
    store: Store {
        max_output_bytes: Some(64),
        ..DEFAULT_STORE
    },
    checks: SAFETY_CHECKS,
};

/// Nothing stays claimed by a call that was dropped.
const DROPPED_CALLS: Profile = Profile {
    store: DEFAULT_STORE,
    checks: Checks {
        orphans_of_dropped_calls: true,
        ..ORPHAN_CHECKS
    },
};

/// Nothing stays claimed by a call whose claim failed.
const FAILED_CLAIMS: Profile = Profile {
    store: DEFAULT_STORE,
    checks: Checks {
        orphans_of_failed_claims: true,
        ..ORPHAN_CHECKS
    },
};

/// Every profile, for the soak.
const PROFILES: [(&str, Profile); 5] = [
    ("safety", SAFETY),
    ("full store", FULL_STORE),
    ("small outputs", SMALL_OUTPUTS),
    ("dropped calls", DROPPED_CALLS),
    ("failed claims", FAILED_CLAIMS),
];

#[test]
fn bodies_run_once_per_claim_and_callers_get_their_own_or_the_stored_result() {
    check(
        "bodies_run_once_per_claim_and_callers_get_their_own_or_the_stored_result",
        SAFETY,
        seed().unwrap_or(DEFAULT_SEED),
        cases(CASES),
    );
}

#[test]
fn a_full_store_never_makes_a_body_run_again() {
    check(
        "a_full_store_never_makes_a_body_run_again",
        FULL_STORE,
        seed().unwrap_or(DEFAULT_SEED),
        cases(CASES),
    );
}

#[test]
fn a_result_the_store_refuses_never_makes_a_body_run_again() {
    check(
        "a_result_the_store_refuses_never_makes_a_body_run_again",
        SMALL_OUTPUTS,
        seed().unwrap_or(DEFAULT_SEED),
        cases(CASES),
    );
}

#[test]
fn a_call_dropped_during_its_claim_leaves_no_claim_behind() {
    check(
        "a_call_dropped_during_its_claim_leaves_no_claim_behind",
        DROPPED_CALLS,
        seed().unwrap_or(DEFAULT_SEED),
        cases(CASES),
    );
}

#[test]
fn a_call_whose_claim_failed_leaves_no_claim_behind() {
    check(
        "a_call_whose_claim_failed_leaves_no_claim_behind",
        FAILED_CLAIMS,
        seed().unwrap_or(DEFAULT_SEED),
        cases(CASES),
    );
}

#[test]
#[ignore = "soak: many more schedules, minutes; run with --ignored"]
fn soak() {
    let seed = seed().unwrap_or_else(fresh_seed);
    let cases = cases(SOAK_CASES);
    eprintln!("model check soak: seed {seed}, {cases} schedules per profile");
    for (name, profile) in PROFILES {
        check(&format!("soak ({name})"), profile, seed, cases);
    }
}

// What the checker found, shrunk and kept as fixed schedules: each fails
// alone, with its timeline, until its bug is fixed.

/// Bug 1 of issue 11 (seed 11, schedule 81): storing the result fails once,
/// the engine waits to retry, the caller gives up meanwhile, the claim guard
/// releases the claim, and the next call runs the body a second time.
#[test]
fn found_a_call_dropped_while_its_result_is_retried_lets_the_body_run_again() {
    replay(
        "found_a_call_dropped_while_its_result_is_retried_lets_the_body_run_again",
        SAFETY,
        &schedule(vec![
            fault(Op::Complete, Effect::Fail),
            call(0, BodyEnd::Ok, Some(1)),
        ]),
    );
}

/// Bug 1 again, with the completion in flight rather than failed: the guard
/// releases the claim before the completion lands, which is then fenced.
#[test]
fn found_a_call_dropped_while_its_result_is_in_flight_lets_the_body_run_again() {
    replay(
        "found_a_call_dropped_while_its_result_is_in_flight_lets_the_body_run_again",
        SAFETY,
        &schedule(vec![
            fault(Op::Complete, Effect::Delay(30)),
            call(0, BodyEnd::Ok, Some(1)),
        ]),
    );
}

/// Bug 2 of issue 11 (seed 11, schedule 84): the caller gives up while its
/// claim is on the way; the store applies it anyway and nobody releases it.
#[test]
fn found_a_call_dropped_during_its_claim_leaves_the_key_claimed() {
    replay(
        "found_a_call_dropped_during_its_claim_leaves_the_key_claimed",
        DROPPED_CALLS,
        &schedule(vec![
            fault(Op::Claim, Effect::Delay(20)),
            call(0, BodyEnd::Ok, Some(1)),
        ]),
    );
}

/// Seed 11, schedule 19: the store applies a claim but its answer is lost;
/// the call fails closed and leaves the claim behind for a lease.
#[test]
fn found_a_claim_whose_answer_was_lost_leaves_the_key_claimed() {
    replay(
        "found_a_claim_whose_answer_was_lost_leaves_the_key_claimed",
        FAILED_CLAIMS,
        &schedule(vec![
            fault(Op::Claim, Effect::LoseReply),
            call(0, BodyEnd::Ok, None),
        ]),
    );
}

/// Bug 4 of issue 11 (seed 11, schedule 3): a full `MemoryBackend` evicts
/// an unexpired completed record, and the next call with its key runs again.
#[test]
fn found_a_full_store_evicts_a_result_and_the_body_runs_again() {
    let mut schedule = schedule(vec![
        call(0, BodyEnd::Ok, None),
        call(1, BodyEnd::Ok, None),
        call(2, BodyEnd::Ok, None),
    ]);
    schedule.store = FULL_STORE.store;
    replay(
        "found_a_full_store_evicts_a_result_and_the_body_runs_again",
        FULL_STORE,
        &schedule,
    );
}

/// Bug 5 of issue 11 (seed 11, schedule 1): the store refuses the result as
/// too large, refuses the "not stored" marker too (its reason text does not
/// fit either), the claim runs out, and the next call runs the body again.
#[test]
fn found_a_result_too_large_for_the_store_lets_the_body_run_again() {
    let mut schedule = schedule(vec![call(0, BodyEnd::Ok, None)]);
    schedule.store = SMALL_OUTPUTS.store;
    if let Step::Call(plan) = &mut schedule.steps[0] {
        plan.body.big = true;
    }
    replay(
        "found_a_result_too_large_for_the_store_lets_the_body_run_again",
        SMALL_OUTPUTS,
        &schedule,
    );
}

fn schedule(steps: Vec<Step>) -> Schedule {
    Schedule {
        lease_ms: 250,
        ttl_ms: 24 * 3_600_000,
        store: DEFAULT_STORE,
        steps,
    }
}

/// A call on `key` whose body returns at once, dropped `cancel_after_ms`
/// after it starts.
fn call(key: u8, ends: BodyEnd, cancel_after_ms: Option<u64>) -> Step {
    Step::Call(CallPlan {
        key,
        input: 0,
        wait_ms: None,
        body: BodyPlan {
            duration_ms: 0,
            ends,
            big: false,
        },
        cancel_after_ms,
    })
}

/// The next `op` on key 0 goes wrong as `effect` says.
fn fault(op: Op, effect: Effect) -> Step {
    Step::Fault(Fault {
        key: 0,
        op,
        effect,
        times: 1,
    })
}

/// Runs `cases` schedules drawn from `seed`; panics with a report on the
/// first schedule that breaks a check of `profile`.
fn check(test: &str, profile: Profile, seed: u64, cases: u32) {
    let config = Config {
        cases,
        // The seed is the reproduction; no files left in the source tree.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let ran = Cell::new(0u32);
    let first_failure = Cell::new(None);
    let result = runner.run(&schedules(profile), |schedule| {
        ran.set(ran.get() + 1);
        match exec::run(&schedule, profile.checks, false).violation {
            None => Ok(()),
            Some(violation) => {
                if first_failure.get().is_none() {
                    first_failure.set(Some(ran.get()));
                }
                Err(TestCaseError::fail(violation))
            }
        }
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(_, minimal)) => {
            let failed_at = first_failure.get().unwrap_or(0);
            let shrink_runs = ran.get() - failed_at;
            panic!(
                "{}",
                report(test, profile, seed, cases, failed_at, shrink_runs, &minimal)
            );
        }
        Err(TestError::Abort(why)) => panic!("model check {test} aborted: {why}"),
    }
}

/// Runs one fixed schedule, as a regression test of what the checker found.
fn replay(test: &str, profile: Profile, schedule: &Schedule) {
    let verdict = exec::run(schedule, profile.checks, true);
    if verdict.violation.is_some() {
        panic!("{}", report(test, profile, 0, 1, 1, 0, schedule));
    }
}

fn report(
    test: &str,
    profile: Profile,
    seed: u64,
    cases: u32,
    failed_at: u32,
    shrink_runs: u32,
    minimal: &Schedule,
) -> String {
    // Replayed with the timeline on: runs are deterministic, so it fails the
    // same way, now with every step written down.
    let verdict = exec::run(minimal, profile.checks, true);
    let mut out = String::new();
    let _ = writeln!(out, "\nmodel check `{test}` found a counter-example.\n");
    match &verdict.violation {
        Some(violation) => {
            let _ = writeln!(out, "{violation}\n");
        }
        None => {
            let _ = writeln!(
                out,
                "(the shrunk schedule passed when replayed: the run is not deterministic, which \
                 is a bug of the checker)\n"
            );
        }
    }
    if seed != 0 {
        let _ = writeln!(
            out,
            "Schedule {failed_at} of {cases} failed (seed {seed}); {shrink_runs} runs shrank it \
             to:"
        );
    } else {
        let _ = writeln!(out, "The schedule:");
    }
    let _ = writeln!(out, "{minimal}");
    if seed != 0 {
        let _ = writeln!(
            out,
            "Replay: MODEL_SEED={seed} MODEL_CASES={cases} cargo test -p idempotent-core --test \
             model_check -- --exact {}\n",
            test.split(' ').next().unwrap_or(test)
        );
    }
    let _ = writeln!(
        out,
        "Timeline of that schedule (store operations indented):"
    );
    for line in &verdict.trace {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn seed() -> Option<u64> {
    let seed = std::env::var("MODEL_SEED").ok()?;
    Some(
        seed.trim()
            .parse()
            .unwrap_or_else(|_| panic!("MODEL_SEED must be an unsigned integer, not {seed:?}")),
    )
}

fn cases(default: u32) -> u32 {
    match std::env::var("MODEL_CASES") {
        Ok(cases) => cases
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("MODEL_CASES must be a count, not {cases:?}")),
        Err(_) => default,
    }
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos());
    // Kept short, so it is easy to copy from a report.
    (nanos % 1_000_000_000) as u64 + 1
}

/// ChaCha's 32-byte seed, spread from `seed` by SplitMix64 so nearby seeds
/// give unrelated schedules.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut state = seed;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes
}
