//! Reading bodies into memory, up to a limit: a request's, so it can be
//! fingerprinted and then handed to the inner service, and a response's, so
//! it can be stored, or else streamed on.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::problem::Problem;
use crate::BoxError;

/// The whole body, or the problem to answer: 413 past `limit` bytes, 400
/// when the body fails midway.
pub(crate) async fn read_limited<B>(
    body: B,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Problem>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    // A declared length over the limit is refused before reading a byte.
    if declares_more_than(headers, limit) {
        return Err(Problem::BodyTooLarge { limit });
    }
    // Limited also stops a chunked body, or one that lies about its length.
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Problem::BodyTooLarge { limit }),
        Err(error) => {
            tracing::debug!(%error, "the request body failed while it was read");
            Err(Problem::BodyUnreadable)
        }
    }
}

/// Whether `headers` declare a body longer than `limit` bytes.
pub(crate) fn declares_more_than(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64)
}

/// A response body read up to a limit.
pub(crate) enum ResponseBody<B> {
    /// The whole body, at most the limit.
    Whole(Bytes),
    /// The limit was passed: what was read, and the body to read on.
    Longer(Bytes, Pin<Box<B>>),
    /// The body failed before its end.
    Failed(BoxError),
}

/// Reads `body` whole if it ends within `limit` bytes. Trailers are dropped,
/// as the stored form has none; past the limit they stay in the rest.
pub(crate) async fn read_response<B>(body: B, limit: usize) -> ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return ResponseBody::Failed(error.into()),
        };
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() > limit {
                return ResponseBody::Longer(read.freeze(), body);
            }
        }
    }
    ResponseBody::Whole(read.freeze())
}
