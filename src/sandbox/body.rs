//! The response body a client receives: capped, and cut (an error, not a clean end) when the
//! execution fails after the head was sent.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::ExecutionError;

/// A response body from a Micro. It ends cleanly only if the execution finished cleanly; any
/// failure (trap, timeout, a body past the limit) becomes an error, so the server cuts the
/// connection instead of sending a short body that looks complete.
pub struct ResponseBody {
    kind: Kind,
    /// Bytes handed to the server so far.
    sent: u64,
    /// The body's length as its `content-length` declares it, if it does: the server stops
    /// polling once that much is sent, so the body is dropped without seeing its end.
    declared: Option<u64>,
    /// How the body ended, once it has: `Ok` for a clean end, else the failure.
    ended: Option<Result<(), &'static str>>,
    /// Told how the body ended (or that it was dropped unfinished), once.
    on_end: Option<OnEnd>,
}

/// Called once with the body's end.
type OnEnd = Box<dyn FnOnce(BodyEnd) + Send + Sync>;

/// How a response body ended, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyEnd {
    /// Bytes of body sent.
    pub(crate) bytes: u64,
    /// `None` if it ended cleanly; the outcome of the failure if it was cut; `Some("aborted")`
    /// if it was dropped unfinished (the client went away), unless it had nothing to send.
    pub(crate) failure: Option<&'static str>,
}

enum Kind {
    Guest {
        inner: HyperOutgoingBody,
        limit: u64,
        outcome: Option<oneshot::Receiver<Result<(), ExecutionError>>>,
        /// Stops the execution if the body is dropped unfinished; `None` for a response that has
        /// no body to send (HEAD, 204, 304), whose execution may go on after the head.
        execution: Option<AbortHandle>,
    },
    Full(Option<Bytes>),
    /// Chunks sent by a task of the runtime's own (a stream of log lines); ends when it stops.
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
}

impl ResponseBody {
    /// A guest's body, `declared` bytes long if its `content-length` says so.
    pub(crate) fn guest(
        inner: HyperOutgoingBody,
        limit: u64,
        declared: Option<u64>,
        outcome: oneshot::Receiver<Result<(), ExecutionError>>,
        execution: Option<AbortHandle>,
    ) -> Self {
        let mut body = Self::new(Kind::Guest {
            inner,
            limit,
            outcome: Some(outcome),
            execution,
        });
        body.declared = declared;
        body
    }

    /// A body of fixed bytes, as the runtime's own responses have.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::new(Kind::Full(Some(bytes.into())))
    }

    /// A body of the chunks sent on the other end of `receiver`, until that end is dropped.
    pub(crate) fn channel(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self::new(Kind::Channel(receiver))
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            sent: 0,
            declared: None,
            ended: None,
            on_end: None,
        }
    }

    /// Calls `f` once when the body has ended or is dropped, after whatever was given before.
    pub(crate) fn on_end(mut self, f: impl FnOnce(BodyEnd) + Send + Sync + 'static) -> Self {
        self.on_end = Some(match self.on_end.take() {
            None => Box::new(f),
            Some(before) => Box::new(move |end| {
                before(end);
                f(end);
            }),
        });
        self
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.ended.is_none()
            && self.declared == Some(self.sent)
            && let Kind::Guest { outcome, .. } = &mut self.kind
            && let Some(receiver) = outcome.take()
        {
            // Every declared byte reached the server: the client has the whole body. The
            // execution may still be finishing (bounded by its time limit as any other); it is
            // left to end, and its outcome is what the log records.
            let on_end = self.on_end.take();
            let bytes = self.sent;
            let report = async move {
                let failure = match receiver.await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.outcome()),
                    Err(_) => Some("aborted"),
                };
                if let Some(on_end) = on_end {
                    on_end(BodyEnd { bytes, failure });
                }
            };
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(report);
            }
            return;
        }
        if let Some(on_end) = self.on_end.take() {
            let failure = match self.ended {
                Some(Ok(())) => None,
                Some(Err(outcome)) => Some(outcome),
                // Nothing was left to send (a HEAD, a bodiless status): not the client's doing.
                None if self.is_end_stream()
                    || self.sent == 0 && self.size_hint().exact() == Some(0) =>
                {
                    None
                }
                None => Some("aborted"),
            };
            on_end(BodyEnd {
                bytes: self.sent,
                failure,
            });
        }
        // Dropped before the execution's outcome was read: the client went away mid-body.
        if let Kind::Guest {
            outcome: Some(_),
            execution: Some(execution),
            ..
        } = &self.kind
        {
            execution.abort();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ExecutionError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExecutionError>>> {
        let polled = ready!(self.as_mut().poll_inner(cx));
        match &polled {
            None => self.ended = Some(Ok(())),
            Some(Ok(frame)) => {
                self.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Some(Err(error)) => self.ended = Some(Err(error.outcome())),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Guest { .. } | Kind::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Guest { inner, .. } => inner.size_hint(),
            Kind::Channel(_) => SizeHint::default(),
        }
    }
}

impl ResponseBody {
    /// The next frame of the body, before it is counted in `sent` (a guest's frame that would
    /// take the body past its limit is an error instead).
    fn poll_inner(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExecutionError>>> {
        let sent = self.sent;
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Channel(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Kind::Guest {
                inner,
                limit,
                outcome,
                execution,
            } => {
                if let Some(frame) = ready!(Pin::new(&mut *inner).poll_frame(cx)) {
                    let frame = frame.map_err(|e| ExecutionError::Body(e.to_string()))?;
                    if let Some(data) = frame.data_ref()
                        && sent + data.len() as u64 > *limit
                    {
                        if let Some(execution) = execution {
                            execution.abort();
                        }
                        *outcome = None;
                        return Poll::Ready(Some(Err(ExecutionError::ResponseTooLarge {
                            limit: *limit,
                        })));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                // The guest's body ended: it is complete only if the execution succeeded.
                let Some(receiver) = outcome else {
                    return Poll::Ready(None);
                };
                let result = ready!(Pin::new(receiver).poll(cx));
                *outcome = None;
                match result {
                    Ok(Ok(())) => Poll::Ready(None),
                    Ok(Err(error)) => Poll::Ready(Some(Err(error))),
                    Err(_) => Poll::Ready(Some(Err(ExecutionError::Aborted))),
                }
            }
        }
    }
}
