//! Runs one schedule through the public runtime API on tokio's paused clock.
//!
//! Everything runs on one current-thread runtime whose clock only moves when
//! every task waits, and every `select!` here and in the engine is biased, so
//! a schedule replays the same way every time: the seed and the schedule are
//! the whole reproduction.

use std::sync::{Arc, Once};
use std::time::Duration;

use idempotent_core::{Idempotency, MemoryBackend};

use super::faulty::{FaultyBackend, CALLER};
use super::model::{Answer, Model, ModelError, Verdict};
use super::schedule::{output, BodyEnd, BodyPlan, CallPlan, Checks, Schedule, Step, KEYS};

const SCOPE: &str = "model";

/// Time for every late request, background release and completion retry
/// to land after the last call ended: longer than any delay a fault adds
/// and than the longest lease a schedule uses.
const SETTLE: Duration = Duration::from_secs(5);

/// The payload of a body's planned panic, kept out of the test output.
struct PlannedPanic;

pub fn run(schedule: &Schedule, checks: Checks, trace: bool) -> Verdict {
    silence_planned_panics();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(drive(schedule, checks, trace))
}

async fn drive(schedule: &Schedule, checks: Checks, trace: bool) -> Verdict {
    let keys: Vec<String> = (0..KEYS).map(stored_key).collect();
    let lease = Duration::from_millis(schedule.lease_ms);
    let ttl = Duration::from_millis(schedule.ttl_ms);
    let model = Arc::new(Model::new(lease, ttl, checks, keys.clone(), trace));
    let mut store = match schedule.store.max_entries {
        Some(entries) => MemoryBackend::with_max_entries(entries),
        None => MemoryBackend::new(),
    };
    if let Some(bytes) = schedule.store.max_output_bytes {
        store = store.max_output_bytes(bytes);
    }
    let backend = FaultyBackend::new(store, model.clone());
    let config = Config { lease, ttl };

    let mut calls = Vec::new();
    for step in &schedule.steps {
        match step {
            Step::Call(plan) => {
                let id = model.call_started(plan, false);
                let task = call(backend.clone(), model.clone(), config, id, *plan);
                calls.push((id, tokio::spawn(CALLER.scope(id, task))));
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Step::Fault(fault) => {
                backend.arm(
                    &keys[usize::from(fault.key)],
                    fault.op,
                    fault.effect,
                    fault.times,
                );
            }
        }
        if model.has_violation() {
            break;
        }
    }
    for (id, task) in calls {
        if let Err(error) = task.await {
            assert!(error.is_panic(), "a call's task was cancelled: {error}");
            model.answered(id, Answer::Panicked);
        }
    }
    tokio::time::sleep(SETTLE).await;
    model.quiescent();

    // One more retry per key, on a healthy store: a result that was lost
    // (released, forgotten) shows as a body that runs again.
    backend.disarm_all();
    let probe = CallPlan {
        key: 0,
        input: 0,
        wait_ms: None,
        body: BodyPlan {
            duration_ms: 0,
            ends: BodyEnd::Ok,
            big: false,
        },
        cancel_after_ms: None,
    };
    for key in 0..KEYS {
        if model.has_violation() {
            break;
        }
        let plan = CallPlan { key, ..probe };
        let id = model.call_started(&plan, true);
        let task = call(backend.clone(), model.clone(), config, id, plan);
        // Awaited in its own task, so the background work it spawns runs
        // just as the schedule's calls' does.
        if tokio::spawn(CALLER.scope(id, task)).await.is_err() {
            model.answered(id, Answer::Panicked);
        }
    }
    model.finish()
}

#[derive(Clone, Copy)]
struct Config {
    lease: Duration,
    ttl: Duration,
}

/// One call as a user writes it, dropped where the plan says.
async fn call(
    backend: FaultyBackend,
    model: Arc<Model>,
    config: Config,
    id: usize,
    plan: CallPlan,
) {
    let body = {
        let model = model.clone();
        move || async move {
            model.body_started(id);
            if plan.body.duration_ms > 0 {
                tokio::time::sleep(Duration::from_millis(plan.body.duration_ms)).await;
            }
            model.body_ended(id, plan.body.ends);
            match plan.body.ends {
                BodyEnd::Ok => Ok(output(id, plan.body.big)),
                BodyEnd::Err => Err(ModelError::Body(id)),
                BodyEnd::Panic => std::panic::panic_any(PlannedPanic),
            }
        }
    };
    let mut idempotency = Idempotency::new(backend)
        .scope(SCOPE)
        .lease(config.lease)
        .ttl(config.ttl);
    if let Some(wait) = plan.wait_ms {
        idempotency = idempotency.wait(Duration::from_millis(wait));
    }
    let run = idempotency.run(&plan.key, &plan.input, body);
    let answer = match plan.cancel_after_ms {
        None => Answer::Returned(run.await),
        Some(0) => Answer::Dropped,
        Some(after) => tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_millis(after)) => Answer::Dropped,
            answer = run => Answer::Returned(answer),
        },
    };
    model.answered(id, answer);
}

/// The store key of a schedule's key, as the runtime computes it.
fn stored_key(key: u8) -> String {
    Idempotency::new(MemoryBackend::new())
        .scope(SCOPE)
        .prepare(&key, &())
        .record_key()
        .expect("a u8 key serializes")
        .to_owned()
}

/// Planned panics would print a backtrace line each, thousands per run;
/// every other panic still reaches the default hook.
fn silence_planned_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<PlannedPanic>() {
                default(info);
            }
        }));
    });
}
