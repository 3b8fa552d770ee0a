//! `IdempotencyLayer`: the public builder of the layer's settings, and the
//! tower `Layer` that wraps a service with them.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, Method, StatusCode};
use idempotent_core::{default_backend, Backend};
use tower_layer::Layer;

use crate::config::{title_case, Config};
use crate::key_space::{Chosen, KeySpace, Unchosen};
use crate::IdempotencyService;

/// A tower [`Layer`] that makes requests carrying an `Idempotency-Key` header
/// safe to retry: the first request with a key runs the inner service; a
/// retry with the same key and the same request gets the stored response
/// back, marked `Idempotent-Replayed: true`, without running it again.
///
/// It follows the IETF draft (draft-ietf-httpapi-idempotency-key-header):
///
/// | request | answer |
/// | --- | --- |
/// | method not configured (default: only POST and PATCH apply) | passed through |
/// | no key | passed through, or 400 when [`required`](Self::required) |
/// | key malformed, repeated, or longer than [`max_key_len`](Self::max_key_len) | 400 |
/// | body over [`max_body_bytes`](Self::max_body_bytes) | 413 |
/// | new key | runs the inner service; its response is stored (see [`store_if`](Self::store_if)) |
/// | new key, an event stream or a response over [`max_response_bytes`](Self::max_response_bytes) | runs the inner service; its response streams through, unstored (see [`stream_if`](Self::stream_if)) |
/// | key seen, same request, response stored | the stored response, `Idempotent-Replayed: true` |
/// | key seen, same request, still running | 409 with `Retry-After` (or waits: [`wait`](Self::wait)) |
/// | key seen, same request, response streamed | 409 `response-streamed`, no `Retry-After`; not run again |
/// | key seen with another method, path, query, body or fingerprinted header | 422 |
/// | store unreachable | 503 with `Retry-After`; the inner service does not run |
///
/// Every answer of the layer itself is an RFC 9457 `application/problem+json`
/// document whose `code` member names its kind (`key-reused`,
/// `response-streamed`, ...; the README lists them all), with a `type` of
/// `about:blank` or under [`problem_type_base`](Self::problem_type_base).
/// Each request runs through the `idempotent_core` runtime, so its
/// guarantees hold here too: the claim is renewed while the handler runs,
/// released if the request is cancelled or the handler panics before the
/// handler returned its response head, and fenced if a stalled holder lost
/// its lease. A request dropped after the head (a client timeout while the
/// response body is read to be stored) never frees its key: the layer
/// finishes reading and storing it in a task of its own.
///
/// The key space is a choice the layer makes you write down: call
/// [`client_id`](Self::client_id) so keys are per client, or
/// [`shared_key_space`](Self::shared_key_space) when every client may see
/// every key. In one shared space a client that sends another's key and
/// body gets the other's stored response, and a 422 tells it that a key it
/// guessed is in use. Until one of the two is called the layer's type is
/// `IdempotencyLayer<Unchosen>`, which is not a tower `Layer`. Keys are also
/// per [`scope`](Self::scope).
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::post, Router};
/// use idempotent_core::MemoryBackend;
/// use idempotent_http::IdempotencyLayer;
///
/// # #[derive(Clone)] struct Account(String);
/// let app: Router = Router::new()
///     .route("/payments", post(|| async { "charged" }))
///     .layer(
///         IdempotencyLayer::new(MemoryBackend::new())
///             .required(true)
///             .ttl(Duration::from_secs(24 * 60 * 60))
///             // Set by your authentication middleware, which runs first.
///             .client_id(|request| {
///                 request.extensions.get::<Account>().map(|account| account.0.clone())
///             }),
///     );
/// ```
///
/// Without `client_id(..)` or `shared_key_space()` the layer wraps nothing,
/// and this does not compile:
///
/// ```compile_fail
/// use axum::{routing::post, Router};
/// use idempotent_core::MemoryBackend;
/// use idempotent_http::IdempotencyLayer;
///
/// let app: Router = Router::new()
///     .route("/payments", post(|| async { "charged" }))
///     .layer(IdempotencyLayer::new(MemoryBackend::new()));
/// ```
#[derive(Clone, Debug)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct IdempotencyLayer<K = Unchosen> {
    config: Arc<Config>,
    key_space: PhantomData<fn() -> K>,
}

impl IdempotencyLayer<Unchosen> {
    /// A layer storing its records in `backend`: a `MemoryBackend` for one
    /// process, a `RedisBackend` (or an `Arc` of any store) to share them
    /// between processes.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self::from_arc(Arc::new(backend))
    }

    /// A layer on a shared store.
    pub fn from_arc(backend: Arc<dyn Backend>) -> Self {
        Self {
            config: Arc::new(Config::new(backend)),
            key_space: PhantomData,
        }
    }

    /// A layer on the process default store (see
    /// [`set_default_backend`](idempotent_core::set_default_backend)), the
    /// one `#[idempotent]` functions use too.
    pub fn with_default_backend() -> Self {
        Self::new(default_backend())
    }

    /// Scopes keys per client: `extractor` returns the client's identity
    /// (typically the authenticated account, put in the request's extensions
    /// by an authentication layer that runs first), so one client can never
    /// replay another client's response by sending its key. Requests for
    /// which it returns `None` share one anonymous key space, apart from
    /// every client's.
    pub fn client_id(
        self,
        extractor: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> IdempotencyLayer<Chosen> {
        self.with(|config| config.client_id = Some(Arc::new(extractor)))
            .chosen()
    }

    /// Lets all clients share one key space: the key and the request alone
    /// find the record. Choose it only when every client may see every
    /// other's responses (one trusted caller, or keys that are unguessable
    /// and never shared) since a client that sends another's key and body
    /// gets the other's response, and a 422 for another body tells it the
    /// key is in use.
    pub fn shared_key_space(self) -> IdempotencyLayer<Chosen> {
        self.chosen()
    }

    fn chosen(self) -> IdempotencyLayer<Chosen> {
        IdempotencyLayer {
            config: self.config,
            key_space: PhantomData,
        }
    }
}

impl<K> IdempotencyLayer<K> {
    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// The header carrying the key. Default: `Idempotency-Key`.
    pub fn header(self, name: HeaderName) -> Self {
        self.with(|config| {
            config.header_title = title_case(&name);
            config.header = name;
        })
    }

    /// The methods the layer applies to; others pass through. Default: POST
    /// and PATCH, as the draft suggests (PUT and DELETE are idempotent by
    /// definition, GET is safe).
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.with(|config| config.methods = methods.into_iter().collect())
    }

    /// Whether a request of an applicable method without a key is refused
    /// (400) instead of passed through. Default: `false`.
    pub fn required(self, required: bool) -> Self {
        self.with(|config| config.required = required)
    }

    /// Adds a request header to the fingerprint (besides method, path, query
    /// and body): the same key with another value of it is a 422. Use it for
    /// headers that change the request's meaning, such as `Content-Type` or
    /// an API version.
    pub fn fingerprint_header(self, name: HeaderName) -> Self {
        self.with(|config| config.fingerprint_headers.push(name))
    }

    /// Adds a response header to the ones stored and replayed. Default: the
    /// representation and resource headers `Content-Type`,
    /// `Content-Encoding`, `Content-Language`, `Content-Location`,
    /// `Content-Disposition`, `Content-Range`, `Location`, `ETag`,
    /// `Last-Modified`, `Vary` and `Cache-Control`, so a replay is the same
    /// representation as the first answer. Others (`Set-Cookie`, `Date`,
    /// request ids) reach the first caller only.
    pub fn store_header(self, name: HeaderName) -> Self {
        self.with(|config| config.stored_headers.push(name))
    }

    /// Which response statuses are stored and replayed; the others release
    /// the key so a retry runs again. Default:
    /// [`default_store_policy`](crate::default_store_policy) (2xx, 3xx and
    /// 4xx stored except 408, 425 and 429; 5xx released), which documents why.
    pub fn store_if(self, policy: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.with(|config| config.store_if = Arc::new(policy))
    }

    /// The longest key accepted, in bytes; longer ones get a 400. Default: 255.
    pub fn max_key_len(self, max: usize) -> Self {
        self.with(|config| config.max_key_len = max)
    }

    /// The largest request body accepted with a key, in bytes; larger ones
    /// get a 413 (such bodies are buffered to be fingerprinted). Default: 1 MiB.
    pub fn max_body_bytes(self, max: usize) -> Self {
        self.with(|config| config.max_body_bytes = max)
    }

    /// The longest response stored, in bytes. A longer one, by its
    /// `Content-Length` or, without one, once it grows past this while it
    /// is read, is streamed on to its caller as it is produced, without
    /// being stored: the key records that the request ran, and a retry gets
    /// a 409 `response-streamed` problem, never a second run. Default: 1 MiB,
    /// the default output limit of `MemoryBackend` and `RedisBackend`.
    ///
    /// Set it at or below your store's output limit, less the record's
    /// overhead (the allowed headers, JSON escaping, base64 for binary
    /// bodies): a response under this limit that the store then refuses is
    /// still not run again, but its retries get a 500 `response-not-stored`.
    pub fn max_response_bytes(self, max: usize) -> Self {
        self.with(|config| config.max_response_bytes = max)
    }

    /// Which responses are streamed to their caller as they are produced,
    /// without being stored (after [`store_if`](Self::store_if) kept their
    /// status; a response whose status is not stored is always streamed, and
    /// releases the key). Their keys record that the request ran, and a
    /// retry gets a 409 `response-streamed` problem. Default:
    /// [`default_stream_policy`](crate::default_stream_policy), event
    /// streams; responses past [`max_response_bytes`](Self::max_response_bytes)
    /// stream whatever the policy says.
    pub fn stream_if(
        self,
        policy: impl Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.with(|config| config.stream_if = Arc::new(policy))
    }

    /// The namespace of the records in the store. Default: `idempotent-http`.
    /// Give each application sharing a store its own.
    pub fn scope(self, scope: impl Into<Cow<'static, str>>) -> Self {
        let scope = scope.into();
        self.with(|config| config.scope = scope)
    }

    /// How long a stored response is replayed. Default: 24 hours. Like
    /// `lease` and `wait`, it must lie within the bounds of
    /// [`idempotent_core::limits`]; with a value outside them every keyed
    /// request is refused (500, `layer-misconfigured`) before anything is
    /// claimed, and the error is logged.
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with(|config| config.ttl = ttl)
    }

    /// How long a claim lives without renewal; it is renewed every
    /// `lease / 3` while the handler runs, so this bounds how long a crashed
    /// server blocks a key, not how long a handler may take. Default: 30 s.
    pub fn lease(self, lease: Duration) -> Self {
        self.with(|config| config.lease = lease)
    }

    /// Lets a duplicate that arrives while the first request runs wait up to
    /// `wait` for its response (then replayed to it) instead of getting a 409
    /// at once. Default: no wait, as the draft describes.
    pub fn wait(self, wait: Duration) -> Self {
        self.with(|config| config.wait = Some(wait))
    }

    /// The `Retry-After` sent with a 409 or 503 (rounded to whole seconds, at
    /// least one). Default: 1 s.
    pub fn retry_after(self, delay: Duration) -> Self {
        self.with(|config| config.retry_after = delay)
    }

    /// The base of the problem documents' `type` URIs, each `{base}{code}`
    /// (so end it with `/` or `#`), to point clients at your own
    /// documentation of the codes (this crate's README lists them).
    /// Default: none, and every `type` is `about:blank` as RFC 9457 advises
    /// for problems without a page of their own; the `code` member names
    /// the kind either way.
    pub fn problem_type_base(self, base: impl Into<String>) -> Self {
        let base = base.into();
        self.with(|config| config.problem_type_base = Some(base))
    }
}

impl<S, K: KeySpace> Layer<S> for IdempotencyLayer<K> {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, Arc::clone(&self.config))
    }
}
