//! Which responses are stored and replayed, which release the key, and
//! which are streamed through without being stored.

use http::header::CONTENT_TYPE;
use http::response::Parts;
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

/// The default stream policy: a `text/event-stream` response is streamed to
/// its caller as it is produced, without being stored; other responses are
/// read to be stored, and streamed only once they grow past
/// [`max_response_bytes`](crate::IdempotencyLayer::max_response_bytes).
///
/// Why: an event stream may never end, and its events are meant for the
/// connection that asked, not for a replay; holding it back to store it
/// would send the client nothing while the key's claim is renewed forever.
/// The request still ran, so its key records that, and a retry gets a 409
/// `response-streamed` problem instead of a second run.
///
/// ```
/// use http::Response;
/// use idempotent_http::default_stream_policy;
///
/// let (events, ()) = Response::builder()
///     .header("content-type", "text/event-stream; charset=utf-8")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert!(default_stream_policy(&events));
/// let (json, ()) = Response::builder()
///     .header("content-type", "application/json")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert!(!default_stream_policy(&json));
/// ```
pub fn default_stream_policy(response: &Parts) -> bool {
    response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}
