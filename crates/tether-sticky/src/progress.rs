//! A request body that reports how far it got: still arriving, complete, or failed. The
//! upstream client starts its response timeout only once the body is complete, and tells a
//! client's broken body from a backend's failure.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;

use crate::upstream::{BodyError, UpstreamBody};

/// How far a request body got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Bytes may still come.
    Arriving,
    /// The whole body was read.
    Complete,
    /// The body yielded an error: the client's fault.
    Failed,
}

pin_project_lite::pin_project! {
    /// Wraps a request body and publishes its [`Progress`].
    pub(crate) struct Watched {
        #[pin]
        inner: UpstreamBody,
        progress: watch::Sender<Progress>,
    }
}

impl Watched {
    /// The wrapped body and a receiver of its progress.
    pub(crate) fn new(inner: UpstreamBody) -> (Self, watch::Receiver<Progress>) {
        let start = if inner.is_end_stream() {
            Progress::Complete
        } else {
            Progress::Arriving
        };
        let (progress, receiver) = watch::channel(start);
        (Self { inner, progress }, receiver)
    }
}

fn publish(progress: &watch::Sender<Progress>, now: Progress) {
    progress.send_if_modified(|current| {
        let changed = *current == Progress::Arriving && now != Progress::Arriving;
        if changed {
            *current = now;
        }
        changed
    });
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => publish(this.progress, Progress::Failed),
            Poll::Ready(None) => publish(this.progress, Progress::Complete),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A body whose length is known ends with its last data frame, and the client may never
        // poll it again: this is where it learns it is complete.
        let end = self.inner.is_end_stream();
        if end {
            publish(&self.progress, Progress::Complete);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, Full, StreamBody};

    use super::*;
    use crate::box_body;

    #[tokio::test]
    async fn reports_complete_and_failed_bodies() {
        let (body, progress) = Watched::new(box_body(Full::new(Bytes::from_static(b"abc"))));
        assert_eq!(*progress.borrow(), Progress::Arriving);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"abc");
        assert_eq!(*progress.borrow(), Progress::Complete);

        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        ];
        let broken = StreamBody::new(futures_util::stream::iter(frames));
        let (body, progress) = Watched::new(box_body(broken));
        assert!(body.collect().await.is_err());
        assert_eq!(*progress.borrow(), Progress::Failed);

        let (_, progress) = Watched::new(box_body(http_body_util::Empty::<Bytes>::new()));
        assert_eq!(*progress.borrow(), Progress::Complete);
    }
}
