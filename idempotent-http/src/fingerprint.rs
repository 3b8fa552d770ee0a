//! What makes two requests "the same request" for one key: method, path,
//! query, the configured headers and the body. The runtime hashes this
//! (SHA-256 of a canonical serialization) into the record's fingerprint.

use http::request::Parts;
use http::HeaderName;
use serde::{Serialize, Serializer};

/// The fingerprint input of one request. Only borrowed, only hashed.
#[derive(Serialize)]
pub(crate) struct RequestFingerprint<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    /// Each configured header with all its values in order; an absent header
    /// has no values, so adding it later is a different request.
    headers: Vec<(&'a str, Vec<Octets<'a>>)>,
    body: Octets<'a>,
}

impl<'a> RequestFingerprint<'a> {
    pub(crate) fn new(parts: &'a Parts, headers: &'a [HeaderName], body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: headers
                .iter()
                .map(|name| {
                    let values = parts.headers.get_all(name).iter();
                    (
                        name.as_str(),
                        values.map(|value| Octets(value.as_bytes())).collect(),
                    )
                })
                .collect(),
            body: Octets(body),
        }
    }
}

/// Raw bytes hashed as one byte string, not as a sequence of numbers.
struct Octets<'a>(&'a [u8]);

impl Serialize for Octets<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idempotent_core::backend::Fingerprint;

    fn fingerprint(uri: &str, method: &str, tenant: Option<&str>, body: &[u8]) -> Fingerprint {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let headers = [HeaderName::from_static("x-tenant")];
        Fingerprint::of(&RequestFingerprint::new(&parts, &headers, body)).unwrap()
    }

    #[test]
    fn each_part_of_the_request_counts() {
        let base = fingerprint("/pay?a=1", "POST", Some("t1"), b"{}");
        assert_eq!(
            base,
            fingerprint("http://host/pay?a=1", "POST", Some("t1"), b"{}")
        );
        assert_ne!(base, fingerprint("/pay?a=1", "PATCH", Some("t1"), b"{}"));
        assert_ne!(base, fingerprint("/paid?a=1", "POST", Some("t1"), b"{}"));
        assert_ne!(base, fingerprint("/pay?a=2", "POST", Some("t1"), b"{}"));
        assert_ne!(base, fingerprint("/pay", "POST", Some("t1"), b"{}"));
        assert_ne!(base, fingerprint("/pay?a=1", "POST", Some("t2"), b"{}"));
        assert_ne!(base, fingerprint("/pay?a=1", "POST", None, b"{}"));
        assert_ne!(base, fingerprint("/pay?a=1", "POST", Some("t1"), b"{ }"));
    }
}
