//! The layer's settings, shared by every service it builds.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{
    HeaderName, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE,
    CONTENT_LOCATION, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, VARY,
};
use http::request::Parts;
use http::response;
use http::{Method, StatusCode};
use idempotent_core::{Backend, Idempotency, DEFAULT_LEASE, DEFAULT_TTL};

use crate::policy::{default_store_policy, default_stream_policy};

/// The header of the IETF draft.
pub(crate) const DEFAULT_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The records' namespace in the store.
pub(crate) const DEFAULT_SCOPE: &str = "idempotent-http";
/// As Stripe's keys: enough for a UUID with a prefix, small enough to refuse
/// someone sending a body's worth of key.
pub(crate) const DEFAULT_MAX_KEY_LEN: usize = 255;
/// 1 MiB: requests are buffered in memory to be fingerprinted.
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// 1 MiB, the default output limit of `MemoryBackend` and `RedisBackend`:
/// the stores cannot say theirs, and a longer response would not fit.
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Headers kept with a stored response: those that describe the body (its
/// representation: without `Content-Encoding` a stored gzip body would be
/// replayed as plain JSON) or the created resource, and how caches may keep
/// it. Anything else (`Set-Cookie`, tracing ids, `Date`) is per-response and
/// is not replayed unless allowed explicitly.
pub(crate) const DEFAULT_STORED_HEADERS: [HeaderName; 11] = [
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_LOCATION,
    CONTENT_DISPOSITION,
    CONTENT_RANGE,
    LOCATION,
    ETAG,
    LAST_MODIFIED,
    VARY,
    CACHE_CONTROL,
];

pub(crate) type StorePolicy = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;
pub(crate) type StreamPolicy = Arc<dyn Fn(&response::Parts) -> bool + Send + Sync>;
pub(crate) type ClientId = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) scope: Cow<'static, str>,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) wait: Option<Duration>,
    pub(crate) header: HeaderName,
    /// `header` as people write it (`Idempotency-Key`), for problem texts.
    pub(crate) header_title: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) required: bool,
    pub(crate) fingerprint_headers: Vec<HeaderName>,
    pub(crate) stored_headers: Vec<HeaderName>,
    pub(crate) store_if: StorePolicy,
    pub(crate) stream_if: StreamPolicy,
    pub(crate) client_id: Option<ClientId>,
    pub(crate) max_key_len: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) retry_after: Duration,
    /// `None`: every problem's `type` is `about:blank`.
    pub(crate) problem_type_base: Option<String>,
}

impl Config {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            scope: Cow::Borrowed(DEFAULT_SCOPE),
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
            wait: None,
            header: DEFAULT_HEADER,
            header_title: title_case(&DEFAULT_HEADER),
            methods: vec![Method::POST, Method::PATCH],
            required: false,
            fingerprint_headers: Vec::new(),
            stored_headers: DEFAULT_STORED_HEADERS.to_vec(),
            store_if: Arc::new(default_store_policy),
            stream_if: Arc::new(default_stream_policy),
            client_id: None,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            retry_after: DEFAULT_RETRY_AFTER,
            problem_type_base: None,
        }
    }
}

impl Config {
    /// The runtime, configured for one call.
    pub(crate) fn runtime(&self) -> Idempotency<Arc<dyn Backend>> {
        let runtime = Idempotency::new(Arc::clone(&self.backend))
            .scope(self.scope.clone())
            .ttl(self.ttl)
            .lease(self.lease);
        match self.wait {
            Some(wait) => runtime.wait(wait),
            None => runtime,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("scope", &self.scope)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("wait", &self.wait)
            .field("header", &self.header)
            .field("methods", &self.methods)
            .field("required", &self.required)
            .field("fingerprint_headers", &self.fingerprint_headers)
            .field("stored_headers", &self.stored_headers)
            .field("client_id", &self.client_id.is_some())
            .field("max_key_len", &self.max_key_len)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("retry_after", &self.retry_after)
            .field("problem_type_base", &self.problem_type_base)
            .finish_non_exhaustive()
    }
}

/// `x-idempotency-key` → `X-Idempotency-Key`: header names are lowercase in
/// `http`, but problem texts read better in the usual spelling.
pub(crate) fn title_case(name: &HeaderName) -> String {
    name.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_response_headers_are_not_stored_by_default() {
        for name in ["set-cookie", "date", "x-request-id", "content-length"] {
            let name = HeaderName::from_static(name);
            assert!(!DEFAULT_STORED_HEADERS.contains(&name), "{name}");
        }
    }

    #[test]
    fn header_names_are_title_cased_for_texts() {
        assert_eq!(title_case(&DEFAULT_HEADER), "Idempotency-Key");
        assert_eq!(
            title_case(&HeaderName::from_static("x-request-key")),
            "X-Request-Key"
        );
    }
}
