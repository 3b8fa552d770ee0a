//! A real HTTP client (reqwest) for the test server, and a raw one for what
//! reqwest cannot send (a chunked body of unknown length).

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request to send.
#[derive(Clone)]
pub struct Send {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A POST of `body` to `path`.
pub fn post(path: &str, body: &str) -> Send {
    request(Method::POST, path, body)
}

pub fn request(method: Method, path: &str, body: &str) -> Send {
    Send {
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

impl Send {
    /// With an `Idempotency-Key` header of exactly `value` (quoted or not).
    pub fn key(self, value: &str) -> Self {
        self.header("idempotency-key", value)
    }

    /// As the client `account`.
    pub fn account(self, account: &str) -> Self {
        self.header(super::app::ACCOUNT, account)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What came back.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as text (lossy for a binary body).
    pub body: String,
    /// The body's exact bytes, as sent (reqwest decompresses nothing here).
    pub bytes: Vec<u8>,
}

/// The bytes are left out: they repeat the body, or drown the failure's
/// message when it is a large download.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.body.clone();
        if body.len() > 600 {
            body.truncate(body.floor_char_boundary(600));
            body.push_str("...");
        }
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Reply {
    /// Whether it carries `Idempotent-Replayed: true`.
    pub fn replayed(&self) -> bool {
        match self.headers.get("idempotent-replayed") {
            None => false,
            Some(value) => {
                assert_eq!(value, "true", "the only replay marker value is `true`");
                true
            }
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    /// Checks that this is an RFC 9457 problem of `status` with `code`, of
    /// the default `type` (`about:blank`), and returns the document.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        let problem = self.problem_of_type(status, code);
        assert_eq!(problem["type"], "about:blank", "{problem}");
        problem
    }

    /// Checks that this is an RFC 9457 problem of `status` whose `code`
    /// member is `code`, whatever its `type`, and returns the document.
    pub fn problem_of_type(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header(CONTENT_TYPE.as_str()),
            Some("application/problem+json"),
            "{self:?}"
        );
        let problem = self.json();
        assert!(problem["type"].is_string(), "a `type`: {problem}");
        assert_eq!(problem["code"], code, "{problem}");
        assert!(!problem["title"].as_str().expect("a `title`").is_empty());
        assert!(!problem["detail"].as_str().expect("a `detail`").is_empty());
        assert_eq!(problem["status"], status);
        assert!(
            !self.replayed(),
            "the layer's own answers are never replays"
        );
        problem
    }
}

/// A client of one test server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        Client {
            http,
            base: base.to_owned(),
        }
    }

    /// Sends `request` and returns the response once its head arrived, to
    /// read the body as it comes.
    pub async fn open(&self, request: &Send) -> reqwest::Response {
        self.builder(request)
            .send()
            .await
            .expect("the request reaches the server")
    }

    pub async fn send(&self, request: &Send) -> Reply {
        let response = self.open(request).await;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.bytes().await.expect("a readable body").to_vec();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    /// Sends `request` as a client that gives up after `patience`, and
    /// checks that it did give up: its connection closes before the answer
    /// is complete.
    pub async fn give_up_after(&self, request: &Send, patience: Duration) {
        let sent = self.builder(request).timeout(patience).send();
        let answer = async { sent.await?.bytes().await };
        match answer.await {
            Err(error) if error.is_timeout() => {}
            other => panic!("expected the client to time out, got {other:?}"),
        }
    }

    fn builder(&self, request: &Send) -> reqwest::RequestBuilder {
        let mut builder = self
            .http
            .request(
                request.method.clone(),
                format!("{}{}", self.base, request.path),
            )
            .header(CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        builder
    }

    /// Opens a raw connection and sends a POST of `{}` with `key`, to read the
    /// answer as it arrives on the wire.
    pub async fn raw_post(&self, path: &str, key: &str) -> tokio::net::TcpStream {
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nIdempotency-Key: {key}\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    /// Sends a POST with a chunked body of `size` bytes (no `Content-Length`,
    /// so the limit must stop it while reading) and returns the status.
    pub async fn post_chunked(&self, path: &str, key: &str, size: usize) -> u16 {
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nIdempotency-Key: {key}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer and close before it read everything, so
        // write errors past the limit are expected and ignored.
        let chunk = vec![b'x'; 256];
        for _ in 0..size.div_ceil(chunk.len()) {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if stream.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        let status_line = answer.lines().next().unwrap_or_default();
        status_line
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
    }
}
