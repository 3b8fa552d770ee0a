//! Reading a request body into memory, up to a limit, so it can be
//! fingerprinted and then handed to the inner service.

use bytes::Bytes;
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
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
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
