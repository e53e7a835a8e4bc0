//! A bound on a client's request body going quiet: without one, a client that announces a body
//! and stops sending holds its connection, and an upstream one, for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tether_core::BoxError;
use tokio::time::{Instant, Sleep};

/// The client sent no body bytes for this long.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body bytes for {0:?}")]
pub(crate) struct BodyStalled(pub(crate) Duration);

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyStalled`] when no frame arrives for `idle`.
    #[derive(Debug)]
    pub(crate) struct StallBound<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        idle: Duration,
    }
}

impl<B> StallBound<B> {
    /// Bounds the quiet between `inner`'s frames (and before the first) to `idle`.
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(idle),
            idle,
        }
    }
}

impl<B> Body for StallBound<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled(*this.idle).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_complete_body_passes_through() {
        let body = StallBound::new(
            http_body_util::Full::new(Bytes::from_static(b"hi")),
            Duration::from_secs(1),
        );
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hi");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_body_fails_and_a_steady_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let body = StallBound::new(
            StreamBody::new(tokio_stream_from(rx)),
            Duration::from_secs(1),
        );
        let reader = tokio::spawn(body.collect());
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
        }
        // Now quiet for longer than the bound, with the sender still open.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let error = reader.await.unwrap().unwrap_err();
        assert!(error.is::<BodyStalled>(), "{error}");
        drop(tx);
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
