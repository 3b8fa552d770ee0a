//! The body type between the layer and its neighbours: the original,
//! streaming body when the layer passes a request or response through, bytes
//! it buffered (a fingerprinted request, a stored or problem response), or a
//! response it began to read and then let stream on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
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
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        Streaming { #[pin] body: B },
        Buffered { #[pin] body: Full<Bytes> },
        // Boxed because it was read from before: the read needed it pinned,
        // and it must move into the response afterwards.
        Resumed { prefix: Option<Bytes>, rest: Pin<Box<B>> },
    }
}

impl<B> MaybeBuffered<B> {
    /// Passes `body` through unchanged.
    pub fn streaming(body: B) -> Self {
        Self {
            inner: Inner::Streaming { body },
        }
    }

    /// A body of `bytes`, already in memory.
    pub fn buffered(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Buffered {
                body: Full::new(bytes),
            },
        }
    }

    /// `prefix`, the part of `rest` already read, then the rest of it.
    pub(crate) fn resumed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        let prefix = (!prefix.is_empty()).then_some(prefix);
        Self {
            inner: Inner::Resumed { prefix, rest },
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
        match self.project().inner.project() {
            InnerProj::Streaming { body } => body.poll_frame(cx).map_err(Into::into),
            InnerProj::Buffered { body } => body.poll_frame(cx).map_err(|never| match never {}),
            InnerProj::Resumed { prefix, rest } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => rest.as_mut().poll_frame(cx).map_err(Into::into),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Streaming { body } => body.is_end_stream(),
            Inner::Buffered { body } => body.is_end_stream(),
            Inner::Resumed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streaming { body } => body.size_hint(),
            Inner::Buffered { body } => body.size_hint(),
            Inner::Resumed { prefix, rest } => {
                let read = prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + read);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + read);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_resumed_body_sends_what_was_read_then_the_rest() {
        let body = MaybeBuffered::resumed(
            Bytes::from_static(b"read "),
            Box::pin(Full::new(Bytes::from_static(b"rest"))),
        );
        assert_eq!(body.size_hint().exact(), Some(9));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "read rest");
    }

    #[tokio::test]
    async fn nothing_read_is_no_empty_frame() {
        let mut body = MaybeBuffered::resumed(
            Bytes::new(),
            Box::pin(Full::new(Bytes::from_static(b"all"))),
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "all");
        assert!(body.frame().await.is_none());
    }
}
