//! The stored form of a response: its status, the allow-listed headers and
//! the body, or the mark of a response that was streamed instead. This is
//! what the runtime stores and replays, so its serialized shape is a storage
//! format: change it only compatibly.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The header that marks a replayed response, as Stripe sends it.
pub(crate) const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What a keyed request that ran leaves in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The response, to replay.
    Response(StoredResponse),
    /// The response was streamed to its caller without being stored (an
    /// event stream, or longer than the layer keeps): a retry is told so.
    Streamed { status: u16 },
    /// The handler answered with `status`, but its response body failed
    /// while it was read: the handler ran, and nothing can be replayed.
    Failed { status: u16 },
}

/// A streamed response's mark is stored as `{"streamed":{"status":200}}`,
/// a failed one's as `{"failed":{"status":200}}`, which a build that
/// predates them fails to decode (a 500, never an empty replay or a second
/// run) rather than misreads; a response is stored as it always was.
#[derive(Serialize, Deserialize)]
struct StreamedRepr {
    status: u16,
}

/// Either shape, read in one pass: no buffering of a large body to try the
/// shapes one after the other.
#[derive(Deserialize)]
struct StoredRepr {
    status: Option<u16>,
    headers: Option<Vec<(String, Octets)>>,
    body: Option<Octets>,
    streamed: Option<StreamedRepr>,
    failed: Option<StreamedRepr>,
}

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Streamed<'a> {
            streamed: &'a StreamedRepr,
        }
        #[derive(Serialize)]
        struct Failed<'a> {
            failed: &'a StreamedRepr,
        }
        match self {
            Self::Response(response) => response.serialize(serializer),
            Self::Streamed { status } => Streamed {
                streamed: &StreamedRepr { status: *status },
            }
            .serialize(serializer),
            Self::Failed { status } => Failed {
                failed: &StreamedRepr { status: *status },
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = StoredRepr::deserialize(deserializer)?;
        if let Some(StreamedRepr { status }) = repr.streamed {
            return Ok(Self::Streamed { status });
        }
        if let Some(StreamedRepr { status }) = repr.failed {
            return Ok(Self::Failed { status });
        }
        match (repr.status, repr.headers, repr.body) {
            (Some(status), Some(headers), Some(body)) => Ok(Self::Response(StoredResponse {
                status,
                headers,
                body,
            })),
            _ => Err(D::Error::custom(
                "a stored response needs `status`, `headers` and `body`",
            )),
        }
    }
}

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub(crate) struct StoredResponse {
    status: u16,
    headers: Vec<(String, Octets)>,
    body: Octets,
}

impl StoredResponse {
    /// Keeps the status, the headers named in `allowed` (all their values, in
    /// order) and the body.
    pub(crate) fn capture(parts: &Parts, body: &Bytes, allowed: &[HeaderName]) -> Self {
        let headers = allowed
            .iter()
            .flat_map(|name| {
                parts.headers.get_all(name).iter().map(move |value| {
                    (
                        name.as_str().to_owned(),
                        Octets(Bytes::copy_from_slice(value.as_bytes())),
                    )
                })
            })
            .collect();
        Self {
            status: parts.status.as_u16(),
            headers,
            body: Octets(body.clone()),
        }
    }

    /// The response to send a retry, marked `Idempotent-Replayed: true`.
    ///
    /// Fails when the record holds a status or header `http` refuses: it was
    /// not written by this layer, or was damaged.
    pub(crate) fn replay(self) -> Result<Response<Bytes>, String> {
        let status = StatusCode::from_u16(self.status)
            .map_err(|_| format!("invalid stored status {}", self.status))?;
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 1);
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid stored header name {name:?}"))?;
            let value = HeaderValue::from_maybe_shared(value.0)
                .map_err(|_| format!("invalid stored value of header {name}"))?;
            headers.append(name, value);
        }
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
        let mut response = Response::new(self.body.0);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// Bytes stored as a JSON string when they are UTF-8 (the usual case: JSON,
/// text, header values), else as `{"base64": "..."}`, so neither a JSON body
/// nor a binary one grows much in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Octets(Bytes);

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum OctetsRepr<'a> {
    Text(std::borrow::Cow<'a, str>),
    Binary { base64: String },
}

impl Serialize for Octets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => OctetsRepr::Text(text.into()),
            Err(_) => OctetsRepr::Binary {
                base64: BASE64.encode(&self.0),
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Octets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match OctetsRepr::deserialize(deserializer)? {
            OctetsRepr::Text(text) => Ok(Self(Bytes::from(text.into_owned()))),
            OctetsRepr::Binary { base64 } => BASE64
                .decode(base64)
                .map(|bytes| Self(Bytes::from(bytes)))
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};

    fn captured(body: &'static [u8]) -> StoredResponse {
        let response = Response::builder()
            .status(StatusCode::CREATED)
            .header(CONTENT_TYPE, "application/json")
            .header(LOCATION, "/payments/1")
            .header(SET_COOKIE, "session=secret")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        StoredResponse::capture(&parts, &Bytes::from_static(body), &[CONTENT_TYPE, LOCATION])
    }

    #[test]
    fn keeps_status_allowed_headers_and_body_and_marks_the_replay() {
        let response = captured(br#"{"id":1}"#).replay().unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[LOCATION], "/payments/1");
        assert!(response.headers().get(SET_COOKIE).is_none());
        assert_eq!(response.headers()[REPLAYED], "true");
        assert_eq!(response.body(), &br#"{"id":1}"#[..]);
    }

    #[test]
    fn text_bodies_store_as_strings_and_binary_ones_as_base64() {
        let json = serde_json::to_value(captured(b"hello")).unwrap();
        assert_eq!(json["body"], "hello");
        let binary = captured(b"\xff\x00");
        let json = serde_json::to_string(&binary).unwrap();
        assert!(json.contains(r#""body":{"base64":"/wA="}"#), "{json}");
        let back: Stored = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Stored::Response(binary));
    }

    #[test]
    fn records_of_earlier_builds_still_decode_and_a_streamed_mark_round_trips() {
        let response = captured(br#"{"id":1}"#);
        let earlier = serde_json::to_string(&response).unwrap();
        let back: Stored = serde_json::from_str(&earlier).unwrap();
        assert_eq!(back, Stored::Response(response));

        let streamed = Stored::Streamed { status: 200 };
        let json = serde_json::to_string(&streamed).unwrap();
        assert_eq!(json, r#"{"streamed":{"status":200}}"#);
        assert_eq!(serde_json::from_str::<Stored>(&json).unwrap(), streamed);
        // What a build without the mark reads it as: not a response.
        assert!(serde_json::from_str::<StoredResponse>(&json).is_err());
        assert!(serde_json::from_str::<Stored>(r#"{"status":200}"#).is_err());

        let failed = Stored::Failed { status: 201 };
        let json = serde_json::to_string(&failed).unwrap();
        assert_eq!(json, r#"{"failed":{"status":201}}"#);
        assert_eq!(serde_json::from_str::<Stored>(&json).unwrap(), failed);
        assert!(serde_json::from_str::<StoredResponse>(&json).is_err());
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let mut stored = captured(b"");
        stored.status = 42;
        assert!(stored.replay().is_err());
    }
}
