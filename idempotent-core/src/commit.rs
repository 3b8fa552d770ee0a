//! The committing mode: for a store that writes a call's record in the same
//! transaction as the body's own writes (the Postgres store's transactional
//! mode), so the two commit together or not at all. The engine claims,
//! waits, replays, renews and releases as for every call; the store's work
//! runs the body and the commit.

use std::time::Duration;

use crate::{BackendError, Error, FencingToken};

/// The record a committing call's work writes with its transaction: the key
/// it claimed, the claim's token to fence the write on, and the ttl.
#[derive(Clone, Copy, Debug)]
pub struct Commit<'a> {
    pub(crate) key: &'a str,
    pub(crate) token: FencingToken,
    pub(crate) ttl: Duration,
}

impl Commit<'_> {
    /// The stored key (`{scope}:{hex digest}`).
    pub fn key(&self) -> &str {
        self.key
    }

    /// The claim's fencing token: the completion must be a compare-and-set
    /// on it, as [`Backend::complete`](crate::Backend::complete) is.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// How long the completed record is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// How a committing call's work ended.
#[derive(Debug)]
pub enum Settled<T, E> {
    /// The body's writes and the completed record (encoded with
    /// [`stored_result::encode_ok`](crate::backend::stored_result::encode_ok))
    /// committed together.
    Committed(T),
    /// The body returned `Err`; nothing was committed.
    BodyFailed(E),
    /// Nothing was committed, for a reason of the store's (a result too large
    /// or not serializable, a failed statement); the call answers `error`.
    NotCommitted(Error),
    /// The completion found the claim no longer this call's: nothing was
    /// committed, and the record will be the other call's.
    Fenced,
    /// The commit failed or did not answer: whether the body's writes and the
    /// record committed is unknown (they did both or neither).
    Unknown(BackendError),
}
