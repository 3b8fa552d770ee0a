//! The body type between the layer and its neighbours: the original,
//! streaming body when the layer passes a request or response through, or
//! bytes it buffered (a fingerprinted request, a stored or problem response).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// A body that is either passed through untouched or was buffered by the
    /// layer.
    ///
    /// The inner service receives requests with this body, and the layer
    /// answers with it. In axum it needs no mention: routers accept any body
    /// of `Bytes`. In a plain tower or hyper stack, the inner service takes
    /// `Request<MaybeBuffered<B>>` where `B` is the server's body type.
    #[derive(Debug)]
    pub struct MaybeBuffered<B> {
        #[pin]
        inner: Either<B, Full<Bytes>>,
    }
}

impl<B> MaybeBuffered<B> {
    /// Passes `body` through unchanged.
    pub fn streaming(body: B) -> Self {
        Self {
            inner: Either::Left(body),
        }
    }

    /// A body of `bytes`, already in memory.
    pub fn buffered(bytes: Bytes) -> Self {
        Self {
            inner: Either::Right(Full::new(bytes)),
        }
    }
}

impl<B> Body for MaybeBuffered<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
