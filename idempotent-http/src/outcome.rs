//! How a keyed request ended when the runtime has no stored response to give
//! it: the error type of the runtime body, and the problems it maps to.

use http::Response;
use idempotent_core::Error;

use crate::config::Config;
use crate::problem::Problem;
use crate::MaybeBuffered;

/// The `Err` side of the runtime body. Any `Err` releases the key (the layer
/// never uses `cache_err`), which is exactly what these cases need.
pub(crate) enum Unstored<E, B> {
    /// The runtime answered without running the handler, or its record could
    /// not be read: 409, 422, 503, 500.
    Idempotency(Error),
    /// The handler answered with a status the store policy does not keep
    /// (5xx by default): the key is released so a retry runs again, and
    /// this response goes to this client only.
    NotStored(Response<MaybeBuffered<B>>),
    /// The inner service failed with its own error instead of a response.
    Service(E),
}

impl<E, B> From<Error> for Unstored<E, B> {
    fn from(error: Error) -> Self {
        Self::Idempotency(error)
    }
}

/// The problem answering a runtime error.
pub(crate) fn problem_for(error: &Error, config: &Config) -> Problem {
    let header = config.header_title.clone();
    match error {
        Error::InProgress => Problem::InProgress {
            header,
            retry_after: config.retry_after,
        },
        Error::PayloadMismatch => Problem::KeyReused { header },
        // Fail closed: without the store the layer cannot know whether this
        // is a retry, so the handler must not run.
        // `CommitUnknown`: effect and record committed together or not at
        // all, so a retry is safe, as after an outage.
        Error::Backend(_) | Error::CommitUnknown(_) => Problem::StoreUnavailable {
            retry_after: config.retry_after,
        },
        Error::ResultNotStored { .. } => Problem::ResponseNotStored { header },
        Error::InvalidConfig { .. } => Problem::Misconfigured,
        // From a handler's own `require_key` call: the request had no key.
        Error::MissingKey => Problem::KeyMissing { header },
        // `Codec`, and variants added later: the record cannot be used, and
        // running the handler again in its place could repeat a side effect.
        _ => Problem::StoredResponseUnreadable,
    }
}
