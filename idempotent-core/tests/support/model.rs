//! The reference model: which record each key must hold after every store
//! operation the wrapper saw, and the invariant every claim, body and answer
//! is checked against.
//!
//! A claim epoch starts with each `Acquired` claim. A body may run again on
//! a key only when the previous epoch's record went away legitimately:
//! - its body did not return `Ok` (it failed, panicked, was dropped while
//!   running, or never ran), and the claim was released or ran out;
//! - its claim was lost: the lease ran out (taken over, or forgotten by the
//!   store) while the store was failing that holder, so it could neither
//!   renew nor store its result;
//! - its completed record's ttl ran out.
//!
//! Anything else that lets a body run again is a counter-example.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use idempotent_core::backend::{CasOutcome, ClaimOutcome, FencingToken, Fingerprint};
use idempotent_core::{BackendError, Error};
use tokio::time::Instant;

use super::faulty::{Applied, Observer};
use super::schedule::{output, BodyEnd, CallPlan, Checks, Effect, Op};

/// The error type of the checked calls: a body's own failure, or the
/// runtime's.
#[derive(Debug)]
pub enum ModelError {
    /// Returned by the body of this call.
    Body(usize),
    Idempotency(Error),
}

impl From<Error> for ModelError {
    fn from(error: Error) -> Self {
        Self::Idempotency(error)
    }
}

/// How a call ended, as its caller saw it.
pub enum Answer {
    Returned(Result<String, ModelError>),
    /// The caller dropped the call's future.
    Dropped,
    /// The call's task panicked.
    Panicked,
}

pub struct Model {
    state: Mutex<State>,
}

/// What a run leaves for the report.
pub struct Verdict {
    pub violation: Option<String>,
    /// The timeline of the run, when it was asked for.
    pub trace: Vec<String>,
}

struct State {
    start: Instant,
    lease: Duration,
    ttl: Duration,
    checks: Checks,
    /// The stored key of each key of the schedule.
    keys: Vec<String>,
    records: HashMap<usize, Record>,
    epochs: Vec<Epoch>,
    calls: Vec<CallState>,
    /// Tokens whose claim someone asked the store to complete or release
    /// after the claim was applied.
    freed: HashSet<FencingToken>,
    /// Tokens an injected fault hit (in a renew, complete or release).
    faulted: HashSet<FencingToken>,
    trace: Option<Vec<String>>,
    violation: Option<String>,
}

/// What the store must hold at a key (no entry: nothing ever claimed it).
#[derive(Clone, Debug)]
enum Record {
    Claimed {
        epoch: usize,
        lease_until: Instant,
    },
    Completed {
        epoch: usize,
        output: Vec<u8>,
        expires_at: Instant,
    },
    Released {
        epoch: usize,
        at: Instant,
        /// Whether the epoch's body had returned `Ok`: releasing such a
        /// claim loses a result that must be replayed.
        after_ok: bool,
    },
}

struct Epoch {
    token: FencingToken,
    caller: Option<usize>,
    fingerprint: Fingerprint,
    at: Instant,
}

struct CallState {
    key: usize,
    label: &'static str,
    big: bool,
    /// Epochs acquired by this call's claims (normally at most one).
    epochs: Vec<usize>,
    /// Epochs whose completed record a claim of this call was answered with.
    replayed: Vec<usize>,
    /// Whether an injected fault hit one of this call's claims.
    claim_faulted: bool,
    body: Body,
    ended: Option<Ended>,
}

struct Ended {
    at: Instant,
    answer: String,
    dropped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    NotRun,
    /// Started and not finished: still running, or dropped while running.
    Started,
    ReturnedOk,
    ReturnedErr,
    Panicked,
}

impl Model {
    pub fn new(
        lease: Duration,
        ttl: Duration,
        checks: Checks,
        keys: Vec<String>,
        trace: bool,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                start: Instant::now(),
                lease,
                ttl,
                checks,
                keys,
                records: HashMap::new(),
                epochs: Vec::new(),
                calls: Vec::new(),
                freed: HashSet::new(),
                faulted: HashSet::new(),
                trace: trace.then(Vec::new),
                violation: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A body panics outside this lock, so a poisoned lock still holds
        // a consistent model.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call and returns its id, from which its body's output is
    /// made (`schedule::output`).
    pub fn call_started(&self, plan: &CallPlan, probe: bool) -> usize {
        let mut state = self.lock();
        let id = state.calls.len();
        let label = if probe { "probe" } else { "call" };
        state.calls.push(CallState {
            key: usize::from(plan.key),
            label,
            big: plan.body.big,
            epochs: Vec::new(),
            replayed: Vec::new(),
            claim_faulted: false,
            body: Body::NotRun,
            ended: None,
        });
        state.note(|_| format!("{label} #{id} starts: {plan}"));
        id
    }

    pub fn body_started(&self, call: usize) {
        let mut state = self.lock();
        state.note(|state| format!("{}: body starts", state.who(Some(call))));
        state.calls[call].body = Body::Started;
        if state.calls[call].epochs.is_empty() && state.checks.safety {
            let message = format!(
                "{}'s body started, but no claim of key {} was acquired for it",
                state.who(Some(call)),
                state.calls[call].key
            );
            state.violate(message);
        }
    }

    pub fn body_ended(&self, call: usize, ends: BodyEnd) {
        let mut state = self.lock();
        state.calls[call].body = match ends {
            BodyEnd::Ok => Body::ReturnedOk,
            BodyEnd::Err => Body::ReturnedErr,
            BodyEnd::Panic => Body::Panicked,
        };
        state.note(|state| {
            let body = match ends {
                BodyEnd::Ok => format!("Ok({})", short(&state.output_of(call))),
                BodyEnd::Err => "Err".to_owned(),
                BodyEnd::Panic => "a panic".to_owned(),
            };
            format!("{}: body returns {body}", state.who(Some(call)))
        });
    }

    pub fn answered(&self, call: usize, answer: Answer) {
        let mut state = self.lock();
        let summary = match &answer {
            Answer::Returned(Ok(value)) => format!("Ok({})", short(value)),
            Answer::Returned(Err(ModelError::Body(id))) => format!("Err(body of call #{id})"),
            Answer::Returned(Err(ModelError::Idempotency(error))) => {
                format!("Err({})", error_name(error))
            }
            Answer::Dropped => "dropped by its caller".to_owned(),
            Answer::Panicked => "panicked".to_owned(),
        };
        state.note(|state| format!("{} answers {summary}", state.who(Some(call))));
        state.calls[call].ended = Some(Ended {
            at: Instant::now(),
            answer: summary,
            dropped: matches!(answer, Answer::Dropped),
        });
        if state.checks.safety {
            if let Some(wrong) = state.wrong_answer(call, &answer) {
                state.violate(wrong);
            }
        }
    }

    /// Called once every call ended and every late operation landed: a
    /// claim still held now is held by nobody.
    pub fn quiescent(&self) {
        let mut state = self.lock();
        state.note(|_| "every call has ended; what does the store still hold?".to_owned());
        let mut orphans: Vec<_> = state
            .records
            .iter()
            .filter_map(|(&key, record)| match *record {
                Record::Claimed { epoch, .. } => Some((key, epoch)),
                _ => None,
            })
            .filter(|&(_, epoch)| !state.freed.contains(&state.epochs[epoch].token))
            .collect();
        orphans.sort_unstable();
        for (key, epoch) in orphans {
            let caller = state.epochs[epoch].caller;
            let ended = caller.and_then(|call| state.calls[call].ended.as_ref());
            let dropped = ended.is_none_or(|ended| ended.dropped);
            let checked = if dropped {
                state.checks.orphans_of_dropped_calls
            } else {
                state.checks.orphans_of_failed_claims
            };
            if !checked {
                continue;
            }
            let ended = ended.map_or("never ended".to_owned(), |ended| {
                format!("ended at {}: {}", state.ms(ended.at), ended.answer)
            });
            let cause = if dropped {
                "A call dropped before it learnt of its claim (while the claim was in flight, or \
                 its answer on the way back) must still release the claim once the store applies it"
            } else {
                "The claim's answer was lost, so the call failed closed, but the store had \
                 applied it: a call whose claim fails must release whatever the store may have \
                 applied"
            };
            let message = format!(
                "orphan claim: key {key} is still claimed (token {}, acquired at {} for {}, which \
                 {ended}), although every call has ended and nobody ever asked the store to \
                 release or complete that claim; until its lease runs out every call on key \
                 {key} gets InProgress. {cause}",
                state.epochs[epoch].token.get(),
                state.ms(state.epochs[epoch].at),
                state.who(caller),
            );
            state.violate(message);
        }
    }

    pub fn finish(&self) -> Verdict {
        let mut state = self.lock();
        Verdict {
            violation: state.violation.take(),
            trace: state.trace.take().unwrap_or_default(),
        }
    }

    pub fn has_violation(&self) -> bool {
        self.lock().violation.is_some()
    }
}

impl Observer for Model {
    fn asked(
        &self,
        op: Op,
        key: &str,
        token: Option<FencingToken>,
        caller: Option<usize>,
        fault: Option<Effect>,
    ) {
        let mut state = self.lock();
        if let (Op::Complete | Op::Release, Some(token)) = (op, token) {
            state.freed.insert(token);
        }
        if fault.is_some() {
            match (token, caller) {
                (Some(token), _) => {
                    state.faulted.insert(token);
                }
                (None, Some(call)) => state.calls[call].claim_faulted = true,
                (None, None) => {}
            }
        }
        let key = state.key_index(key);
        state.note(|state| {
            let who = state.who(caller);
            let token = token.map_or(String::new(), |token| format!(", token {}", token.get()));
            let fault = fault.map_or(String::new(), |fault| format!("   << FAULT: {fault}"));
            format!("{who} asks {op}(key {key}{token}){fault}")
        });
    }

    fn applied(&self, key: &str, applied: Applied<'_>) {
        let mut state = self.lock();
        let key = state.key_index(key);
        let now = Instant::now();
        match applied {
            Applied::Claim {
                caller,
                fingerprint,
                token,
                outcome,
            } => {
                state.note(|_| format!("    store: claim(key {key}) -> {}", claim_text(outcome)));
                state.claimed(key, now, caller, fingerprint, token, outcome);
            }
            Applied::Complete {
                token,
                output,
                outcome,
            } => {
                state.note(|_| {
                    format!(
                        "    store: complete(key {key}, token {}) -> {}",
                        token.get(),
                        cas_text(outcome)
                    )
                });
                state.completed(key, now, token, output, outcome);
            }
            Applied::Release { token, outcome } => {
                state.note(|_| {
                    format!(
                        "    store: release(key {key}, token {}) -> {}",
                        token.get(),
                        cas_text(outcome)
                    )
                });
                state.released(key, now, token, outcome);
            }
            Applied::Renew { token, outcome } => {
                state.note(|_| {
                    format!(
                        "    store: renew(key {key}, token {}) -> {}",
                        token.get(),
                        cas_text(outcome)
                    )
                });
                state.renewed(key, now, token, outcome);
            }
        }
    }
}

impl State {
    fn ms(&self, at: Instant) -> String {
        format!(
            "t={}ms",
            at.saturating_duration_since(self.start).as_millis()
        )
    }

    /// Adds a line to the trace; `line` only runs when a trace is kept.
    fn note(&mut self, line: impl FnOnce(&Self) -> String) {
        if self.trace.is_some() {
            let line = format!("{:>9}  {}", self.ms(Instant::now()), line(self));
            if let Some(trace) = &mut self.trace {
                trace.push(line);
            }
        }
    }

    fn violate(&mut self, what: String) {
        if self.violation.is_none() {
            let at = self.ms(Instant::now());
            self.note(|_| format!("VIOLATION: {what}"));
            self.violation = Some(format!("at {at}: {what}"));
        }
    }

    /// A store disagreeing with the decision table, or with the model's view
    /// of what it holds, breaks the invariant's premises.
    fn inconsistent(&mut self, key: usize, what: String) {
        if self.checks.safety {
            let record = self.describe(key);
            self.violate(format!(
                "the store's answer disagrees with the decision table: {what}; key {key} should \
                 hold {record}"
            ));
        }
    }

    fn key_index(&self, key: &str) -> usize {
        self.keys
            .iter()
            .position(|known| known == key)
            .unwrap_or(usize::MAX)
    }

    fn who(&self, caller: Option<usize>) -> String {
        match caller {
            Some(call) => format!("{} #{call}", self.calls[call].label),
            None => "a background task".to_owned(),
        }
    }

    fn holder(&self, epoch: usize) -> String {
        self.who(self.epochs[epoch].caller)
    }

    fn output_of(&self, call: usize) -> String {
        output(call, self.calls[call].big)
    }

    fn describe(&self, key: usize) -> String {
        match self.records.get(&key) {
            None => "nothing".to_owned(),
            Some(Record::Claimed { epoch, lease_until }) => format!(
                "the claim of {} (token {}, lease until {})",
                self.holder(*epoch),
                self.epochs[*epoch].token.get(),
                self.ms(*lease_until)
            ),
            Some(Record::Completed {
                epoch, expires_at, ..
            }) => format!(
                "the result of {} (until {})",
                self.holder(*epoch),
                self.ms(*expires_at)
            ),
            Some(Record::Released { epoch, at, .. }) => format!(
                "nothing (the claim of {} was released at {})",
                self.holder(*epoch),
                self.ms(*at)
            ),
        }
    }

    fn body_of(&self, epoch: usize) -> Body {
        self.epochs[epoch]
            .caller
            .map_or(Body::NotRun, |call| self.calls[call].body)
    }

    /// Whether the store ever failed the holder of `epoch`: only then may
    /// its claim run out after its body returned.
    fn holder_was_failed(&self, epoch: usize) -> bool {
        let epoch = &self.epochs[epoch];
        self.faulted.contains(&epoch.token)
            || epoch
                .caller
                .is_some_and(|call| self.calls[call].claim_faulted)
    }

    fn claimed(
        &mut self,
        key: usize,
        now: Instant,
        caller: Option<usize>,
        fingerprint: &Fingerprint,
        token: Option<FencingToken>,
        outcome: &Result<ClaimOutcome, BackendError>,
    ) {
        let who = self.who(caller);
        let record = self.records.get(&key).cloned();
        let same_fingerprint =
            |epoch: usize, epochs: &[Epoch]| epochs[epoch].fingerprint == *fingerprint;
        match outcome {
            // The store refused (full): nothing changed.
            Err(_) => {}
            Ok(ClaimOutcome::Acquired { took_over, .. }) => {
                let Some(token) = token else {
                    return self.inconsistent(key, format!("{who}'s claim acquired no token"));
                };
                self.check_acquired(key, now, &who, *took_over, fingerprint, record);
                // Only a release or completion asked after the claim landed
                // can free it: one that overtook a late claim freed nothing.
                self.freed.remove(&token);
                self.epochs.push(Epoch {
                    token,
                    caller,
                    fingerprint: *fingerprint,
                    at: now,
                });
                let epoch = self.epochs.len() - 1;
                if let Some(call) = caller {
                    self.calls[call].epochs.push(epoch);
                }
                self.records.insert(
                    key,
                    Record::Claimed {
                        epoch,
                        lease_until: now + self.lease,
                    },
                );
            }
            Ok(ClaimOutcome::InProgress { .. }) => match record {
                Some(Record::Claimed { epoch, lease_until })
                    if now < lease_until && same_fingerprint(epoch, &self.epochs) => {}
                _ => self.inconsistent(key, format!("{who}'s claim was answered InProgress")),
            },
            Ok(ClaimOutcome::Completed { output }) => match record {
                Some(Record::Completed {
                    epoch,
                    output: ref stored,
                    expires_at,
                }) if stored == output
                    && now < expires_at
                    && same_fingerprint(epoch, &self.epochs) =>
                {
                    if let Some(call) = caller {
                        self.calls[call].replayed.push(epoch);
                    }
                }
                _ => self.inconsistent(
                    key,
                    format!("{who}'s claim was answered with a completed record"),
                ),
            },
            Ok(ClaimOutcome::Mismatch) => match record {
                Some(Record::Claimed { epoch, .. }) if !same_fingerprint(epoch, &self.epochs) => {}
                Some(Record::Completed {
                    epoch, expires_at, ..
                }) if now < expires_at && !same_fingerprint(epoch, &self.epochs) => {}
                _ => self.inconsistent(key, format!("{who}'s claim was answered Mismatch")),
            },
        }
    }

    /// The heart of the invariant: may a new epoch start on `key` now?
    fn check_acquired(
        &mut self,
        key: usize,
        now: Instant,
        who: &str,
        took_over: bool,
        fingerprint: &Fingerprint,
        record: Option<Record>,
    ) {
        if !self.checks.safety {
            return;
        }
        match record {
            None
            | Some(Record::Released {
                after_ok: false, ..
            }) => {
                if took_over {
                    self.inconsistent(key, format!("{who} took over a claim nobody held"));
                }
            }
            Some(Record::Released {
                epoch,
                at,
                after_ok: true,
            }) => {
                let previous = self.holder(epoch);
                let message = format!(
                    "the body runs again: {who} acquired key {key}, but {previous}'s body had \
                     already run and returned Ok, and then its claim (token {}, acquired at {}) \
                     was released at {} instead of completed: its result was never stored and \
                     {who} runs the body a second time. Once a body has returned, nothing may \
                     release its claim (was {previous} dropped while its result was being \
                     stored?)",
                    self.epochs[epoch].token.get(),
                    self.ms(self.epochs[epoch].at),
                    self.ms(at),
                );
                self.violate(message);
            }
            Some(Record::Claimed { epoch, lease_until }) => {
                if now < lease_until {
                    let message = format!(
                        "two holders: {who} acquired key {key} (took_over: {took_over}) while \
                         {}'s claim (token {}) was live until {}",
                        self.holder(epoch),
                        self.epochs[epoch].token.get(),
                        self.ms(lease_until)
                    );
                    self.violate(message);
                } else if took_over && self.epochs[epoch].fingerprint != *fingerprint {
                    self.inconsistent(
                        key,
                        format!("{who} took over a claim made with other arguments"),
                    );
                } else if self.body_of(epoch) == Body::ReturnedOk && !self.holder_was_failed(epoch)
                {
                    let message = format!(
                        "the body runs again: {who} acquired key {key} (took_over: {took_over}) \
                         after the lease of {}'s claim (token {}) ran out at {}, but that \
                         holder's body had returned Ok and the store never failed it: it \
                         left its claim to run out instead of storing its result, or a record \
                         saying the body ran (a result the store refuses must still leave a \
                         marker that fits)",
                        self.holder(epoch),
                        self.epochs[epoch].token.get(),
                        self.ms(lease_until)
                    );
                    self.violate(message);
                }
            }
            Some(Record::Completed {
                epoch, expires_at, ..
            }) => {
                if now < expires_at {
                    let message = format!(
                        "the body runs again: {who} acquired key {key}, but {}'s completed \
                         result was to be kept until {}: the store lost a record before its \
                         ttl (evicted to make room?)",
                        self.holder(epoch),
                        self.ms(expires_at)
                    );
                    self.violate(message);
                } else if took_over {
                    self.inconsistent(key, format!("{who} took over an expired completed record"));
                }
            }
        }
    }

    fn current_epoch(&self, key: usize, token: FencingToken) -> Option<(usize, &Record)> {
        let record = self.records.get(&key)?;
        let epoch = match *record {
            Record::Claimed { epoch, .. } | Record::Completed { epoch, .. } => epoch,
            Record::Released { .. } => return None,
        };
        (self.epochs[epoch].token == token).then_some((epoch, record))
    }

    /// A fenced write is right unless the model says `token` holds a live
    /// claim (a lapsed one may have been forgotten).
    fn check_fenced(&mut self, key: usize, now: Instant, token: FencingToken, op: &str) {
        if let Some((_, Record::Claimed { lease_until, .. })) = self.current_epoch(key, token) {
            if now < *lease_until {
                self.inconsistent(key, format!("{op} with the live claim's token was fenced"));
            }
        }
    }

    fn completed(
        &mut self,
        key: usize,
        now: Instant,
        token: FencingToken,
        output: &[u8],
        outcome: &Result<CasOutcome, BackendError>,
    ) {
        match outcome {
            Ok(CasOutcome::Applied) => match self.current_epoch(key, token) {
                Some((epoch, Record::Claimed { .. })) => {
                    self.records.insert(
                        key,
                        Record::Completed {
                            epoch,
                            output: output.to_vec(),
                            expires_at: now + self.ttl,
                        },
                    );
                }
                // A retry of a completion that was applied: nothing changes.
                Some((_, Record::Completed { .. })) => {}
                _ => self.inconsistent(
                    key,
                    format!("a complete with token {} was applied", token.get()),
                ),
            },
            Ok(CasOutcome::Fenced) => self.check_fenced(key, now, token, "a complete"),
            Err(_) => {}
        }
    }

    fn released(
        &mut self,
        key: usize,
        now: Instant,
        token: FencingToken,
        outcome: &Result<CasOutcome, BackendError>,
    ) {
        match outcome {
            Ok(CasOutcome::Applied) => match self.current_epoch(key, token) {
                Some((epoch, Record::Claimed { .. })) => {
                    let after_ok = self.body_of(epoch) == Body::ReturnedOk;
                    self.records.insert(
                        key,
                        Record::Released {
                            epoch,
                            at: now,
                            after_ok,
                        },
                    );
                }
                _ => self.inconsistent(
                    key,
                    format!("a release with token {} was applied", token.get()),
                ),
            },
            Ok(CasOutcome::Fenced) => self.check_fenced(key, now, token, "a release"),
            Err(_) => {}
        }
    }

    fn renewed(
        &mut self,
        key: usize,
        now: Instant,
        token: FencingToken,
        outcome: &Result<CasOutcome, BackendError>,
    ) {
        match outcome {
            Ok(CasOutcome::Applied) => match self.current_epoch(key, token) {
                Some((epoch, Record::Claimed { .. })) => {
                    let lease_until = now + self.lease;
                    self.records
                        .insert(key, Record::Claimed { epoch, lease_until });
                }
                _ => self.inconsistent(
                    key,
                    format!("a renew with token {} was applied", token.get()),
                ),
            },
            Ok(CasOutcome::Fenced) => self.check_fenced(key, now, token, "a renew"),
            Err(_) => {}
        }
    }

    /// Why `answer` is not one `call` may get, if it is not.
    fn wrong_answer(&self, call: usize, answer: &Answer) -> Option<String> {
        let state = &self.calls[call];
        let who = self.who(Some(call));
        let body = state.body;
        match answer {
            Answer::Dropped => None,
            Answer::Panicked => (body != Body::Panicked)
                .then(|| format!("{who} panicked, but its body ({body:?}) did not")),
            Answer::Returned(Ok(value)) => match body {
                Body::ReturnedOk if *value == self.output_of(call) => None,
                Body::ReturnedOk => Some(format!(
                    "{who} got Ok({}), but its own body ran and returned Ok({}): a caller whose \
                     body ran gets that body's result",
                    short(value),
                    short(&self.output_of(call))
                )),
                Body::NotRun => {
                    let replayed = state.replayed.iter().any(|&epoch| {
                        self.body_of(epoch) == Body::ReturnedOk
                            && self.epochs[epoch]
                                .caller
                                .is_some_and(|holder| *value == self.output_of(holder))
                    });
                    (!replayed).then(|| {
                        let mut message = format!(
                            "{who} got Ok({}), but its body did not run and no completed record \
                             holding that value was replayed to it (replayed:",
                            short(value)
                        );
                        for &epoch in &state.replayed {
                            let _ = write!(message, " the result of {}", self.holder(epoch));
                        }
                        message.push(')');
                        message
                    })
                }
                other => Some(format!(
                    "{who} got Ok({}), but its body ended as {other:?}",
                    short(value)
                )),
            },
            Answer::Returned(Err(ModelError::Body(id))) => {
                (*id != call || body != Body::ReturnedErr).then(|| {
                    format!(
                        "{who} got the Err of call #{id}'s body, but its own body ended as \
                         {body:?}"
                    )
                })
            }
            Answer::Returned(Err(ModelError::Idempotency(error))) => {
                let says_not_run = matches!(
                    error,
                    Error::InProgress
                        | Error::PayloadMismatch
                        | Error::Backend(_)
                        | Error::Codec(_)
                        | Error::ResultNotStored { .. }
                );
                if body != Body::NotRun && says_not_run {
                    Some(format!(
                        "{who}'s body ran ({body:?}), but the call answered {}, which tells \
                         the caller that the body did not run",
                        error_name(error)
                    ))
                } else if matches!(error, Error::Codec(_)) {
                    Some(format!(
                        "{who} got {error:?}: every record the checker's calls write decodes"
                    ))
                } else if matches!(error, Error::ResultNotStored { .. })
                    && state.replayed.is_empty()
                {
                    Some(format!(
                        "{who} got {}, but no record was replayed to it",
                        error_name(error)
                    ))
                } else {
                    None
                }
            }
        }
    }
}

/// An output as the timeline shows it: big outputs only by their start.
fn short(output: &str) -> String {
    match output.split_once(':') {
        Some((id, rest)) => format!("\"{id}:\" + {} bytes", rest.len()),
        None => format!("{output:?}"),
    }
}

fn error_name(error: &Error) -> String {
    match error {
        Error::Backend(error) => format!("Backend({:?})", error.kind()),
        Error::ResultNotStored { .. } => "ResultNotStored".to_owned(),
        Error::Codec(error) => format!("Codec({error})"),
        other => format!("{other:?}"),
    }
}

fn claim_text(outcome: &Result<ClaimOutcome, BackendError>) -> String {
    match outcome {
        Ok(ClaimOutcome::Acquired { token, took_over }) => {
            format!("Acquired(token {}, took_over: {took_over})", token.get())
        }
        Ok(ClaimOutcome::Completed { output }) => format!("Completed({} bytes)", output.len()),
        Ok(other) => format!("{other:?}"),
        Err(error) => format!("Err({:?})", error.kind()),
    }
}

fn cas_text(outcome: &Result<CasOutcome, BackendError>) -> String {
    match outcome {
        Ok(outcome) => format!("{outcome:?}"),
        Err(error) => format!("Err({:?})", error.kind()),
    }
}
