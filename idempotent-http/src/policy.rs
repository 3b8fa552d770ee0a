//! Which responses are stored and replayed, and which release the key.

use http::StatusCode;

/// The default store policy: every final response is stored except server
/// errors (5xx) and the client errors that mean "try again later" (408
/// Request Timeout, 425 Too Early, 429 Too Many Requests).
///
/// Why: a 2xx, 3xx or 4xx is the operation's answer. The request was
/// processed (or judged invalid) and repeating it must give the same answer,
/// so a retry gets it replayed, not a second charge. A 5xx says the server
/// failed, usually before or without completing the side effect; storing it
/// would pin the failure to the key for the whole TTL and leave the client
/// no way to succeed with that key. So a 5xx releases the key and the retry
/// runs again: the handler must then be safe to re-run after its own 5xx (for
/// example, it commits its side effect atomically, or fails before it). 408,
/// 425 and 429 ask the client to retry, which a stored answer would defeat.
///
/// ```
/// use http::StatusCode;
/// use idempotent_http::default_store_policy;
///
/// assert!(default_store_policy(StatusCode::CREATED));
/// assert!(default_store_policy(StatusCode::UNPROCESSABLE_ENTITY));
/// assert!(!default_store_policy(StatusCode::TOO_MANY_REQUESTS));
/// assert!(!default_store_policy(StatusCode::BAD_GATEWAY));
/// ```
pub fn default_store_policy(status: StatusCode) -> bool {
    let retry_later = matches!(
        status,
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS
    );
    (200..500).contains(&status.as_u16()) && !retry_later
}
