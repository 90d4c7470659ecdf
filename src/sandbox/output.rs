//! Guest stdout and stderr as log events in the execution's span, capped per execution.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line logged as one event; longer lines are split.
const MAX_LINE: usize = 16 * 1024;
/// How much a guest may write in one call: anything is accepted (and maybe dropped) at once.
const WRITE_BUDGET: usize = 64 * 1024;

/// One of a guest's two output streams; both share the execution's budget.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    stream: &'static str,
    log: Arc<Mutex<OutputLog>>,
}

/// What an execution has written so far, and how much more may be logged.
pub(crate) struct OutputLog {
    micro: String,
    remaining: u64,
    dropped: u64,
    pending: [Vec<u8>; 2],
}

impl GuestOutput {
    /// A stdout and a stderr for one execution of `micro`, logging at most `limit` bytes together.
    pub(crate) fn pair(
        micro: &str,
        limit: u64,
    ) -> (GuestOutput, GuestOutput, Arc<Mutex<OutputLog>>) {
        let log = Arc::new(Mutex::new(OutputLog {
            micro: micro.to_string(),
            remaining: limit,
            dropped: 0,
            pending: [Vec::new(), Vec::new()],
        }));
        (
            GuestOutput {
                stream: "stdout",
                log: log.clone(),
            },
            GuestOutput {
                stream: "stderr",
                log: log.clone(),
            },
            log,
        )
    }

    fn accept(&self, bytes: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.accept(self.stream, bytes);
    }
}

impl OutputLog {
    fn index(stream: &str) -> usize {
        usize::from(stream == "stderr")
    }

    fn accept(&mut self, stream: &'static str, bytes: &[u8]) {
        let kept = bytes
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        self.remaining -= kept as u64;
        self.dropped += (bytes.len() - kept) as u64;
        let (kept, _) = bytes.split_at(kept);
        let index = Self::index(stream);
        self.pending[index].extend_from_slice(kept);
        while let Some(end) = self.pending[index].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending[index].drain(..=end).collect();
            self.emit(stream, &line[..line.len() - 1]);
        }
        while self.pending[index].len() >= MAX_LINE {
            let line: Vec<u8> = self.pending[index].drain(..MAX_LINE).collect();
            self.emit(stream, &line);
        }
    }

    fn emit(&self, stream: &str, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        tracing::info!(target: "micros::guest", micro = %self.micro, stream, "{line}");
    }

    /// Logs what is left of unfinished lines, and a marker if output was dropped.
    pub(crate) fn finish(&mut self) {
        for (index, stream) in ["stdout", "stderr"].into_iter().enumerate() {
            let rest = std::mem::take(&mut self.pending[index]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
        if self.dropped > 0 {
            tracing::warn!(
                target: "micros::guest",
                micro = %self.micro,
                dropped_bytes = self.dropped,
                "guest output truncated: the per-execution log limit was reached"
            );
            self.dropped = 0;
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
