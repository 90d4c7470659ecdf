//! The request body's guards: a client that stops sending mid-body is cut off, and a connection
//! knows whether its request still has bytes unread.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a request body ends with when its client went quiet for too long.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?}")]
pub(crate) struct BodyTimeout(pub Duration);

/// A request body that fails if no data arrives for `timeout`, so that a slow sender cannot
/// hold an execution slot (or a buffer) forever.
pub(crate) struct TimedBody<B> {
    inner: Pin<Box<B>>,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Bytes of body read so far, for the access log.
    read: Arc<AtomicU64>,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration, read: Arc<AtomicU64>) -> Self {
        Self {
            inner: Box::pin(inner),
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            read,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    self.read
                        .fetch_add(data.map_or(0, |d| d.len() as u64), Ordering::Relaxed);
                }
                let deadline = Instant::now() + self.timeout;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
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

/// A request body that tells its connection whether bytes of it are still unread: the flag is
/// set when the request starts (unless it has no body) and cleared once the body has ended. An
/// answer given while it is set leaves the client still sending, and the connection is closed
/// with a lingering close.
pub(crate) struct WatchedBody<B> {
    inner: B,
    unread: Arc<AtomicBool>,
}

impl<B: Body> WatchedBody<B> {
    /// Watches `inner` for the connection whose flag is `unread`.
    pub(crate) fn new(inner: B, unread: &Arc<AtomicBool>) -> Self {
        unread.store(!inner.is_end_stream(), Ordering::Relaxed);
        Self {
            inner,
            unread: Arc::clone(unread),
        }
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.unread.store(false, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
