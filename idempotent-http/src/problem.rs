//! The layer's own answers, as RFC 9457 problem details
//! (`application/problem+json`) with a `type`, `title`, `status`, `detail`
//! and a `code` extension member naming the kind.
//!
//! The project has no web page of its own to dereference, so by default the
//! `type` is `about:blank` (RFC 9457 §4.2.1) and the kind is carried by the
//! `title` for people and by `code` for programs; the README's "Problem
//! types" table documents every code. With a configured base, the `type` is
//! `{base}{code}`, a URI the application controls.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::key::KeyError;

/// The `type` of every problem when no base is configured.
const ABOUT_BLANK: &str = "about:blank";

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// Something the layer answers itself instead of the inner service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    KeyMissing {
        header: String,
    },
    KeyInvalid {
        header: String,
        reason: String,
    },
    KeyTooLong {
        header: String,
        max: usize,
    },
    BodyTooLarge {
        limit: usize,
    },
    BodyUnreadable,
    KeyReused {
        header: String,
    },
    InProgress {
        header: String,
        retry_after: Duration,
    },
    StoreUnavailable {
        retry_after: Duration,
    },
    StoredResponseUnreadable,
    ResponseNotStored {
        header: String,
    },
    /// An earlier request with the key ran and its response was streamed to
    /// its caller by design, without being stored.
    ResponseStreamed {
        header: String,
        status: u16,
    },
    ResponseUnreadable,
    /// The layer's own settings are invalid (a zero or huge ttl, lease or
    /// wait): nothing was claimed, the request was not processed.
    Misconfigured,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    /// Stable across releases: what clients match on, since `title` is
    /// prose and `type` depends on the configuration.
    code: &'a str,
}

impl Problem {
    pub(crate) fn from_key_error(error: KeyError, header: &str) -> Self {
        let header = header.to_owned();
        match error {
            KeyError::Repeated => Self::KeyInvalid {
                header,
                reason: "the header appears more than once".to_owned(),
            },
            KeyError::Malformed(reason) => Self::KeyInvalid {
                header,
                reason: reason.to_owned(),
            },
            KeyError::TooLong { max } => Self::KeyTooLong { header, max },
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::KeyMissing { .. }
            | Self::KeyInvalid { .. }
            | Self::KeyTooLong { .. }
            | Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::KeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // A conflict with the key's state, not a failure of the server,
            // and without `Retry-After`: retrying the key cannot succeed.
            Self::InProgress { .. } | Self::ResponseStreamed { .. } => StatusCode::CONFLICT,
            Self::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::StoredResponseUnreadable
            | Self::ResponseNotStored { .. }
            | Self::ResponseUnreadable
            | Self::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` member, and the last segment of the `type` URI under a
    /// configured base; each is an anchor in the README.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::KeyMissing { .. } => "key-missing",
            Self::KeyInvalid { .. } => "key-invalid",
            Self::KeyTooLong { .. } => "key-too-long",
            Self::BodyTooLarge { .. } => "body-too-large",
            Self::BodyUnreadable => "body-unreadable",
            Self::KeyReused { .. } => "key-reused",
            Self::InProgress { .. } => "request-in-progress",
            Self::StoreUnavailable { .. } => "store-unavailable",
            Self::StoredResponseUnreadable => "stored-response-unreadable",
            Self::ResponseNotStored { .. } => "response-not-stored",
            Self::ResponseStreamed { .. } => "response-streamed",
            Self::ResponseUnreadable => "response-unreadable",
            Self::Misconfigured => "layer-misconfigured",
        }
    }

    /// Titles follow the draft's examples where it has one.
    fn title(&self) -> String {
        match self {
            Self::KeyMissing { header } => format!("{header} is missing"),
            Self::KeyInvalid { header, .. } => format!("{header} is invalid"),
            Self::KeyTooLong { header, .. } => format!("{header} is too long"),
            Self::BodyTooLarge { .. } => "Request body is too large".to_owned(),
            Self::BodyUnreadable => "Request body could not be read".to_owned(),
            Self::KeyReused { header } => format!("{header} is already used"),
            Self::InProgress { header, .. } => {
                format!("A request is outstanding for this {header}")
            }
            Self::StoreUnavailable { .. } => "Idempotency store unavailable".to_owned(),
            Self::StoredResponseUnreadable => "Stored response cannot be read".to_owned(),
            Self::ResponseNotStored { .. } => "Earlier response was not stored".to_owned(),
            Self::ResponseStreamed { .. } => "Earlier response was streamed, not stored".to_owned(),
            Self::ResponseUnreadable => "Response could not be read".to_owned(),
            Self::Misconfigured => "Idempotency layer misconfigured".to_owned(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::KeyMissing { header } => format!(
                "This operation is idempotent and requires an {header} header; send a unique \
                 key (for example a UUID) and reuse it when retrying the same request."
            ),
            Self::KeyInvalid { header, reason } => format!(
                "The {header} header must be one quoted string (\"...\") or one token: {reason}."
            ),
            Self::KeyTooLong { header, max } => {
                format!("The {header} header may be at most {max} characters long.")
            }
            Self::BodyTooLarge { limit } => {
                format!("Requests with an idempotency key may carry at most {limit} bytes of body.")
            }
            Self::BodyUnreadable => {
                "The request body ended or failed before it was complete.".to_owned()
            }
            Self::KeyReused { header } => format!(
                "This {header} was already used with a different request (method, path, query \
                 or body); the request was not processed. Use a new key for a new request."
            ),
            Self::InProgress { header, .. } => format!(
                "A request with this {header} is still being processed; this one was not. \
                 Retry later to get its response."
            ),
            Self::StoreUnavailable { .. } => "The idempotency store could not be reached, so \
                 the request was not processed; retry later."
                .to_owned(),
            Self::StoredResponseUnreadable => "The response stored for this key cannot be \
                 decoded; the request was not processed again."
                .to_owned(),
            Self::ResponseNotStored { header } => format!(
                "A request with this {header} was processed, but its response could not be \
                 stored; it is not processed again. Use a new key to repeat the operation."
            ),
            Self::ResponseStreamed { header, status } => format!(
                "A request with this {header} was processed, and its response (status {status}) \
                 was streamed to its caller without being stored, so it cannot be replayed; the \
                 request is not processed again. Use a new key to repeat the operation."
            ),
            Self::ResponseUnreadable => {
                "The response body failed while it was being read.".to_owned()
            }
            Self::Misconfigured => "The server's idempotency settings are invalid, so the \
                 request was not processed."
                .to_owned(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::InProgress { retry_after, .. } | Self::StoreUnavailable { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The problem+json response: its `type` is `{type_base}{code}`, or
    /// `about:blank` without a base.
    pub(crate) fn to_response(&self, type_base: Option<&str>) -> Response<Bytes> {
        let status = self.status();
        let code = self.code();
        let kind = type_base.map_or_else(|| ABOUT_BLANK.to_owned(), |base| format!("{base}{code}"));
        let (title, detail) = (self.title(), self.detail());
        let document = Document {
            kind: &kind,
            title: &title,
            status: status.as_u16(),
            detail: &detail,
            code,
        };
        // A struct of strings and a number always serializes.
        let body = serde_json::to_vec(&document).unwrap_or_default();
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
        if let Some(delay) = self.retry_after() {
            // Whole seconds, at least one: `Retry-After: 0` invites a hot loop.
            let seconds = delay.as_secs().max(1);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_progress_is_a_409_problem_with_retry_after() {
        let problem = Problem::InProgress {
            header: "Idempotency-Key".into(),
            retry_after: Duration::from_millis(300),
        };
        let response = problem.to_response(Some("https://example.test/problems/"));
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            json["type"],
            "https://example.test/problems/request-in-progress"
        );
        assert_eq!(json["code"], "request-in-progress");
        assert_eq!(json["status"], 409);
        assert_eq!(
            json["title"],
            "A request is outstanding for this Idempotency-Key"
        );
        assert!(json["detail"]
            .as_str()
            .unwrap()
            .contains("still being processed"));
    }

    #[test]
    fn client_errors_carry_no_retry_after() {
        let response = Problem::BodyTooLarge { limit: 10 }.to_response(None);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.headers().get(RETRY_AFTER).is_none());
    }

    #[test]
    fn without_a_base_the_type_is_about_blank_and_the_code_names_the_kind() {
        let response = Problem::BodyTooLarge { limit: 10 }.to_response(None);
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["code"], "body-too-large");
        assert_eq!(json["title"], "Request body is too large");
    }
}
