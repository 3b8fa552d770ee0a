//! Reading the claim statement's answer: the row it claimed, or the row it
//! found, as one row of the decision table.

use std::time::Duration;

use idempotent_core::backend::{ClaimOutcome, FencingToken};
use idempotent_core::{BackendError, BackendErrorKind};

/// What one run of the claim statement says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A row of the decision table.
    Outcome(ClaimOutcome),
    /// The statement's snapshot predates a row another claim committed
    /// meanwhile (see `sql.rs`): run the statement again.
    Stale,
}

/// What the statement returned, before deciding; each driver reads its
/// row (columns `acquired`, `token`, `took_over`, `same_fingerprint`,
/// `state`, `lease_remaining_us`, `output`) into this.
#[derive(Debug)]
pub(crate) enum Returned {
    /// Nothing: no row in the snapshot.
    Nothing,
    Claimed {
        token: i64,
        took_over: bool,
    },
    Found {
        same_fingerprint: bool,
        state: String,
        /// Until the lease ends; `None` for a completed record.
        lease_remaining_us: Option<i64>,
        output: Option<Vec<u8>>,
    },
}

impl Returned {
    /// The decision table, applied to the found row; `key` names errors.
    pub(crate) fn decide(self, key: &str) -> Result<Answer, BackendError> {
        let (same_fingerprint, state, lease_remaining_us, output) = match self {
            Self::Nothing => return Ok(Answer::Stale),
            Self::Claimed { token, took_over } => {
                return Ok(Answer::Outcome(ClaimOutcome::Acquired {
                    token: FencingToken::new(u64::from_ne_bytes(token.to_ne_bytes())),
                    took_over,
                }))
            }
            Self::Found {
                same_fingerprint,
                state,
                lease_remaining_us,
                output,
            } => (same_fingerprint, state, lease_remaining_us, output),
        };
        if !same_fingerprint {
            return Ok(Answer::Outcome(ClaimOutcome::Mismatch));
        }
        match (state.as_str(), lease_remaining_us, output) {
            ("completed", _, Some(output)) => {
                Ok(Answer::Outcome(ClaimOutcome::Completed { output }))
            }
            ("running", Some(remaining), _) if remaining > 0 => {
                Ok(Answer::Outcome(ClaimOutcome::InProgress {
                    lease_remaining: Duration::from_micros(remaining.unsigned_abs()),
                }))
            }
            // A lapsed claim with this fingerprint: the statement would have
            // taken it over, had its snapshot been current.
            ("running", Some(_), _) => Ok(Answer::Stale),
            (state, ..) => Err(BackendError::new(
                BackendErrorKind::Corrupt,
                format!("the record at {key:?} is not valid (state {state:?})"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(same: bool, state: &str, remaining: Option<i64>, output: Option<&[u8]>) -> Returned {
        Returned::Found {
            same_fingerprint: same,
            state: state.to_owned(),
            lease_remaining_us: remaining,
            output: output.map(<[u8]>::to_vec),
        }
    }

    fn decide(returned: Returned) -> Answer {
        returned.decide("k").unwrap()
    }

    #[test]
    fn each_found_row_is_one_row_of_the_decision_table() {
        assert_eq!(
            decide(Returned::Claimed {
                token: 7,
                took_over: true
            }),
            Answer::Outcome(ClaimOutcome::Acquired {
                token: FencingToken::new(7),
                took_over: true
            })
        );
        assert_eq!(
            decide(found(true, "running", Some(1_500_000), None)),
            Answer::Outcome(ClaimOutcome::InProgress {
                lease_remaining: Duration::from_millis(1500)
            })
        );
        assert_eq!(
            decide(found(true, "completed", None, Some(b"out"))),
            Answer::Outcome(ClaimOutcome::Completed {
                output: b"out".to_vec()
            })
        );
        assert_eq!(
            decide(found(false, "running", Some(-5), None)),
            Answer::Outcome(ClaimOutcome::Mismatch),
            "a lapsed claim is still a record: another fingerprint is a mismatch"
        );
        assert_eq!(
            decide(found(false, "completed", None, None)),
            Answer::Outcome(ClaimOutcome::Mismatch)
        );
    }

    #[test]
    fn a_snapshot_that_contradicts_the_refusal_is_stale() {
        assert_eq!(decide(Returned::Nothing), Answer::Stale);
        assert_eq!(decide(found(true, "running", Some(0), None)), Answer::Stale);
        assert_eq!(
            decide(found(true, "running", Some(-1), None)),
            Answer::Stale
        );
    }

    #[test]
    fn an_invalid_row_is_corrupt() {
        let error = found(true, "completed", None, None)
            .decide("k")
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Corrupt);
    }
}
