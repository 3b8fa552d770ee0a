//! What can go wrong around an idempotent call, and whether the body ran.

use std::fmt;

/// Why an idempotent call did not return the body's own result.
///
/// Every variant says whether the body ran. The HTTP layer maps them to status
/// codes: `InProgress` 409, `PayloadMismatch` 422, `Backend` 503 (`Capacity`
/// included), `MissingKey` 400, the others 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another call with this key holds a live claim and did not finish within
    /// `wait` (or `wait` is not set). The body did not run; retry later.
    #[error(
        "another call with this idempotency key is still running; \
         the body did not run, retry later"
    )]
    InProgress,

    /// The key was used before with different arguments. The body did not run.
    #[error(
        "this idempotency key was already used with different arguments; \
         the body did not run (use a new key for a new request)"
    )]
    PayloadMismatch,

    /// The store failed or could not be reached, so the call failed closed.
    /// The body did not run. The store's error is the [`source`](std::error::Error::source).
    #[error("the idempotency store failed, so the body did not run")]
    Backend(#[source] BackendError),

    /// A stored result could not be decoded (its type changed, or the record is
    /// corrupt), or the key or arguments could not be serialized. The body did
    /// not run, and it is never re-run silently in place of a replay. The
    /// codec's error is the [`source`](std::error::Error::source).
    #[error("a value could not be encoded or decoded, so the body did not run")]
    Codec(#[source] CodecError),

    /// An earlier call with this key ran the body, but its result could not be
    /// stored (it was too large for the store, or it failed to serialize). The
    /// body did not run again: a retry must not repeat the side effect. The
    /// record expires after the function's `ttl`; a new key runs the body anew.
    #[error(
        "an earlier call with this idempotency key ran the body but its result \
         could not be stored ({reason}); the body did not run again"
    )]
    ResultNotStored {
        /// Why the earlier result could not be stored.
        reason: String,
    },

    /// The call's options are invalid: a ttl, lease or wait of zero or beyond
    /// its maximum (see [`limits`](crate::limits)), or an `#[idempotent]`
    /// function whose default scope another function in the process already
    /// has (their paths print the same; one of them needs `scope = "..."`).
    /// Checked before anything is claimed: the body did not run.
    #[error("invalid idempotency options: {reason}; the body did not run")]
    InvalidConfig {
        /// What is wrong, naming the option.
        reason: String,
    },

    /// The body ran in a store's committing mode (the Postgres store's
    /// transactional mode), and its commit failed or did not answer: whether
    /// its writes and its record were committed is unknown. They commit
    /// together or not at all, so a retry either replays the result (they
    /// were) or runs the body again (they were not), never half of it. The
    /// HTTP layer answers 503, as a retry is safe. The store's error is the
    /// [`source`](std::error::Error::source).
    #[error(
        "the body ran, but whether its writes were committed is unknown; a retry \
         replays the result if they were, or runs the body again if not"
    )]
    CommitUnknown(#[source] BackendError),

    /// The call requires an idempotency key (`require_key`) and its key was
    /// `None`. The body did not run. The HTTP layer answers 400.
    #[error("this call requires an idempotency key and got none; the body did not run")]
    MissingKey,
}

/// What a [`BackendError`] is about, so callers can tell a full store from an
/// outage without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store could not be reached or did not answer in time.
    Unavailable,
    /// The store is full (for example a `MemoryBackend` whose bounds are taken
    /// by running calls and unexpired results, which it never evicts).
    Capacity,
    /// The value to store is larger than the store accepts.
    TooLarge,
    /// The record at the key is not one this library wrote, or is damaged.
    Corrupt,
    /// Anything else the store reported.
    Other,
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "store unavailable",
            Self::Capacity => "store full",
            Self::TooLarge => "value too large for the store",
            Self::Corrupt => "corrupt record",
            Self::Other => "store error",
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error reported by a [`Backend`](crate::Backend).
///
/// `Display` prints the kind and the message; the underlying cause, if any,
/// is the [`source`](std::error::Error::source), not repeated in the text
/// (print the chain to see both).
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl BackendError {
    /// An error of `kind` described by `message`.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The [`TooLarge`](BackendErrorKind::TooLarge) error of a store whose
    /// output limit `limit` is below `len` bytes; `setting` names how to
    /// raise it (e.g. `"RedisBackend::with_max_output_bytes"`).
    pub fn output_too_large(len: usize, limit: usize, setting: &str) -> Self {
        Self::new(
            BackendErrorKind::TooLarge,
            format!(
                "the output is {len} bytes, above the store's limit of {limit} bytes \
                 (raise it with {setting})"
            ),
        )
    }

    /// Attaches the underlying cause (a driver or I/O error).
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What the error is about.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The store's description of the failure.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// A value could not be encoded for, or decoded from, the store.
///
/// `Display` prints the message; the cause, if any, is the
/// [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct CodecError {
    message: String,
    source: Option<BoxError>,
}

impl CodecError {
    /// A codec error described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause (usually a `serde_json` error).
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Displays an error and its sources, `: `-separated, for log fields: each
/// error's `Display` says only its own part (see [`BackendError`]), so a log
/// line that should say why prints the chain.
///
/// ```
/// use idempotent_core::backend::{BackendError, BackendErrorKind, ErrorChain};
///
/// let cause = std::io::Error::other("connection reset");
/// let error = BackendError::new(BackendErrorKind::Unavailable, "claim failed").with_source(cause);
/// assert!(ErrorChain(&error).to_string().ends_with("claim failed: connection reset"));
/// ```
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<BackendError> for Error {
    /// A corrupt record is a decoding problem (`Codec`); everything else is a
    /// store failure (`Backend`).
    fn from(error: BackendError) -> Self {
        if error.kind == BackendErrorKind::Corrupt {
            Error::Codec(CodecError::new("the stored record is corrupt").with_source(error))
        } else {
            Error::Backend(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_every_cause_once() {
        let io = std::io::Error::other("connection refused");
        let error = Error::Backend(
            BackendError::new(BackendErrorKind::Unavailable, "claim failed").with_source(io),
        );
        assert_eq!(
            ErrorChain(&error).to_string(),
            "the idempotency store failed, so the body did not run: \
             store unavailable: claim failed: connection refused"
        );
    }
}
