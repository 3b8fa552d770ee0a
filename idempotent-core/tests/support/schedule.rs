//! What the checker runs: schedules of calls, store faults and pauses on a
//! few keys, their proptest strategies, and how they read in a report.

use std::fmt;

use proptest::prelude::*;

/// How many distinct keys the calls of a schedule use: few, so that calls
/// collide (duplicates, retries, takeovers) most of the time.
pub const KEYS: u8 = 3;

/// One run of the checker: every call of a schedule shares its lease and ttl,
/// as the calls of one annotated function do.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub lease_ms: u64,
    pub ttl_ms: u64,
    pub store: Store,
    pub steps: Vec<Step>,
}

/// The `MemoryBackend`'s bounds; `None` is `MemoryBackend::new()`'s.
#[derive(Clone, Copy, Debug)]
pub struct Store {
    pub max_entries: Option<usize>,
    pub max_output_bytes: Option<usize>,
}

/// Steps run in order on tokio's paused clock: a call starts and runs
/// concurrently with the calls already started, while later steps go on.
#[derive(Clone, Debug)]
pub enum Step {
    /// A call starts. Its task first runs when the schedule next sleeps (or
    /// ends), so faults armed by the steps right after it apply to it too.
    Call(CallPlan),
    /// Lets this much virtual time pass: running calls make progress, leases
    /// run out, delayed store operations land.
    Sleep(u64),
    Fault(Fault),
}

#[derive(Clone, Copy, Debug)]
pub struct CallPlan {
    pub key: u8,
    /// The call's arguments: a call whose input differs from the record's
    /// must get `PayloadMismatch`, never a replay.
    pub input: u8,
    pub wait_ms: Option<u64>,
    pub body: BodyPlan,
    /// The caller drops the call's future this long after starting it
    /// (`Some(0)`: before it was ever polled).
    pub cancel_after_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub struct BodyPlan {
    pub duration_ms: u64,
    pub ends: BodyEnd,
    /// Returns an output of `BIG_OUTPUT_BYTES` instead of a few bytes.
    pub big: bool,
}

/// Larger than a store with a small output limit accepts.
pub const BIG_OUTPUT_BYTES: usize = 200;

/// What the body of call `id` returns: unique to the run, so every answer
/// tells whose run it comes from.
pub fn output(id: usize, big: bool) -> String {
    let mut output = id.to_string();
    if big {
        output.push(':');
        output.extend(std::iter::repeat_n('x', BIG_OUTPUT_BYTES));
    }
    output
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    Ok,
    Err,
    Panic,
}

/// The store's next `times` operations `op` on `key` go wrong as `effect`
/// says, whoever makes them.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub key: u8,
    pub op: Op,
    pub effect: Effect,
    pub times: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Claim,
    Complete,
    Release,
    Renew,
}

/// How an operation goes wrong, as it can on a store across a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Refused with `Unavailable`, not applied.
    Fail,
    /// Applied, but the answer is lost: the caller sees `Unavailable`.
    LoseReply,
    /// The request takes this long to arrive, then is applied and answered;
    /// a caller that gives up meanwhile does not call it back.
    Delay(u64),
    /// Applied at once, answered this much later (lost if the caller gives
    /// up meanwhile).
    SlowReply(u64),
    /// Refused as larger than the store accepts (completions only).
    TooLarge,
}

/// Which store, and which checks: each test looks for one kind of bug, so a
/// failure names one broken promise.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub store: Store,
    pub checks: Checks,
}

#[derive(Clone, Copy, Debug)]
pub struct Checks {
    /// Bodies run at most once per claim epoch, callers get their own or
    /// the stored result, the store's answers agree with the model.
    pub safety: bool,
    /// A call dropped before it learnt of its claim leaves no claim behind.
    pub orphans_of_dropped_calls: bool,
    /// A call whose claim failed leaves no claim behind (the store may have
    /// applied a claim whose answer was lost).
    pub orphans_of_failed_claims: bool,
}

pub fn schedules(profile: Profile) -> impl Strategy<Value = Schedule> {
    // Each `prop_oneof!` shrinks toward its first choice: the default lease,
    // a long ttl, an ordinary call.
    (
        prop_oneof![Just(250u64), Just(400), Just(1_000)],
        prop_oneof![3 => Just(24 * 3_600_000u64), 1 => Just(750)],
        prop::collection::vec(step(), 1..12),
    )
        .prop_map(move |(lease_ms, ttl_ms, mut steps)| {
            // The `Backend` contract: a claim that lands late (a store whose
            // connections do not keep order) lands within two leases of its
            // sending; the engine releases a dropped call's claim until then.
            for step in &mut steps {
                if let Step::Fault(Fault {
                    op: Op::Claim,
                    effect: Effect::Delay(ms),
                    ..
                }) = step
                {
                    *ms = (*ms).min(2 * lease_ms - 1);
                }
            }
            Schedule {
                lease_ms,
                ttl_ms,
                store: profile.store,
                steps,
            }
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => call().prop_map(Step::Call),
        3 => fault().prop_map(Step::Fault),
        2 => (0u64..1_000).prop_map(Step::Sleep),
    ]
}

fn call() -> impl Strategy<Value = CallPlan> {
    let body = (
        prop_oneof![Just(0u64), 1u64..375],
        prop_oneof![6 => Just(BodyEnd::Ok), 2 => Just(BodyEnd::Err), 1 => Just(BodyEnd::Panic)],
        prop_oneof![3 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(duration_ms, ends, big)| BodyPlan {
            duration_ms,
            ends,
            big,
        });
    (
        0..KEYS,
        prop_oneof![9 => Just(0u8), 1 => Just(1)],
        prop_oneof![Just(None), Just(Some(125u64)), Just(Some(1_250))],
        body,
        prop_oneof![3 => Just(None), 2 => (0u64..500).prop_map(Some)],
    )
        .prop_map(|(key, input, wait_ms, body, cancel_after_ms)| CallPlan {
            key,
            input,
            wait_ms,
            body,
            cancel_after_ms,
        })
}

fn fault() -> impl Strategy<Value = Fault> {
    let op = prop_oneof![
        Just(Op::Complete),
        Just(Op::Claim),
        Just(Op::Release),
        Just(Op::Renew)
    ];
    let effect = prop_oneof![
        3 => Just(Effect::Fail),
        1 => Just(Effect::LoseReply),
        2 => (1u64..375).prop_map(Effect::Delay),
        1 => (1u64..375).prop_map(Effect::SlowReply),
        1 => Just(Effect::TooLarge),
    ];
    (0..KEYS, op, effect, 1u8..4).prop_map(|(key, op, effect, times)| Fault {
        key,
        op,
        // "Too large" only means something for the one write of a result.
        effect: if effect == Effect::TooLarge && op != Op::Complete {
            Effect::Fail
        } else {
            effect
        },
        times,
    })
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut store = match self.store.max_entries {
            Some(entries) => format!("MemoryBackend::with_max_entries({entries})"),
            None => "MemoryBackend::new()".to_owned(),
        };
        if let Some(bytes) = self.store.max_output_bytes {
            store.push_str(&format!(".max_output_bytes({bytes})"));
        }
        writeln!(
            f,
            "lease {}ms, ttl {}ms, store {store}",
            self.lease_ms, self.ttl_ms
        )?;
        let mut call = 0;
        for (n, step) in self.steps.iter().enumerate() {
            write!(f, "  {:>2}. ", n + 1)?;
            match step {
                Step::Call(plan) => {
                    writeln!(f, "start call #{call}: {plan}")?;
                    call += 1;
                }
                Step::Sleep(ms) => writeln!(f, "sleep {ms}ms")?,
                Step::Fault(fault) => writeln!(f, "{fault}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for CallPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {} input {}", self.key, self.input)?;
        if let Some(wait) = self.wait_ms {
            write!(f, " wait {wait}ms")?;
        }
        let ends = match self.body.ends {
            BodyEnd::Ok => "returns Ok",
            BodyEnd::Err => "returns Err",
            BodyEnd::Panic => "panics",
        };
        let size = match self.body {
            BodyPlan {
                ends: BodyEnd::Ok,
                big: true,
                ..
            } => format!(" ({BIG_OUTPUT_BYTES}+ bytes)"),
            _ => String::new(),
        };
        write!(
            f,
            ", body takes {}ms and {ends}{size}",
            self.body.duration_ms
        )?;
        match self.cancel_after_ms {
            Some(0) => write!(f, "; dropped before its first poll"),
            Some(ms) => write!(f, "; dropped {ms}ms after it starts"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault: the next {} {} on key {}: {}",
            self.times, self.op, self.key, self.effect
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Claim => "claim",
            Op::Complete => "complete",
            Op::Release => "release",
            Op::Renew => "renew",
        })
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Fail => write!(f, "fails (Unavailable, not applied)"),
            Effect::LoseReply => write!(f, "applied, answer lost (Unavailable)"),
            Effect::Delay(ms) => write!(f, "arrives {ms}ms late, then applied"),
            Effect::SlowReply(ms) => write!(f, "applied, answered {ms}ms late"),
            Effect::TooLarge => write!(f, "refused as too large"),
        }
    }
}
