//! The stored form of a response: its status, the allow-listed headers and
//! the body. This is what the runtime stores and replays, so its serialized
//! shape is a storage format: change it only compatibly.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The header that marks a replayed response, as Stripe sends it.
pub(crate) const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A response as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        let back: StoredResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, binary);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let mut stored = captured(b"");
        stored.status = 42;
        assert!(stored.replay().is_err());
    }
}
