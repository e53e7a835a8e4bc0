//! The body of a response through the session layer.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// What the layer says when it answers `503` itself (its store failed, or the request came
/// after its deadline): short, plain, with no internal detail; the cause goes to the log.
pub const UNAVAILABLE_MESSAGE: &str = "session store unavailable";

pin_project! {
    /// The body of a response from [`SessionService`](crate::SessionService): the inner
    /// service's body, or the layer's own short plain-text answer
    /// ([`UNAVAILABLE_MESSAGE`]) when it answers `503` itself.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Message { text: Option<&'static str> },
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body, unchanged.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// The inner service's body; `None` when the layer answered itself.
    pub fn get_ref(&self) -> Option<&B> {
        match &self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Message { .. } => None,
        }
    }

    /// The inner service's body; `None` when the layer answered itself.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Message { .. } => None,
        }
    }

    pub(crate) fn message(text: &'static str) -> Self {
        Self {
            kind: Kind::Message { text: Some(text) },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<&'static str>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Message { text } => Poll::Ready(
                text.take()
                    .filter(|text| !text.is_empty())
                    .map(|text| Ok(Frame::data(text.into()))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Message { text } => text.is_none_or(str::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Message { text } => SizeHint::with_exact(text.map_or(0, |t| t.len() as u64)),
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Message { .. } => "message",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
