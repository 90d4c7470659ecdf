//! Lingering close: once hyper is done with a connection that may still have request bytes on
//! the way (an early 413, 401 or 431, a request hyper could not parse), the server stops sending,
//! reads and discards what the client still sends for a bounded time and byte count, then closes.
//! Closing at once would make the kernel answer those bytes with a reset, and a client that writes
//! its whole request before reading (Python's `http.client`, `requests`) would see "broken pipe"
//! instead of the answer (RFC 9112 §9.6).

use std::net::Shutdown;
use std::os::fd::AsFd as _;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

/// Bytes read at a time while lingering: the one buffer it costs, allocated only when lingering.
const BUFFER: usize = 8 * 1024;

/// A second handle on a connection's socket, kept beside hyper's so that the socket outlives it.
pub(super) struct Linger {
    socket: std::net::TcpStream,
    time: Duration,
    bytes: u64,
}

impl Linger {
    /// A handle on `stream`'s socket, to linger for at most `time` and `bytes`; `None` (logged)
    /// if the process is out of descriptors, in which case the connection closes as before.
    pub(super) fn new(stream: &tokio::net::TcpStream, time: Duration, bytes: u64) -> Option<Self> {
        match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(Self {
                socket: std::net::TcpStream::from(fd),
                time,
                bytes,
            }),
            Err(error) => {
                tracing::debug!("no lingering close for this connection: {error}");
                None
            }
        }
    }

    /// Closes the connection once hyper has let go of it. If `unread` (the client may still be
    /// sending), stops sending first, then reads and discards until the client closes its side
    /// or the bounds are reached; else closes at once.
    pub(super) async fn close(self, unread: bool) {
        if !unread {
            return;
        }
        // Our answer is complete: tell the client, then wait for its side.
        let _ = self.socket.shutdown(Shutdown::Write);
        if self.socket.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(mut stream) = tokio::net::TcpStream::from_std(self.socket) else {
            return;
        };
        let mut buffer = vec![0; BUFFER];
        let mut discarded = 0u64;
        let deadline = tokio::time::Instant::now() + self.time;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(read)) => {
                    discarded += read as u64;
                    if discarded >= self.bytes {
                        tracing::debug!(discarded, "lingering close: byte bound reached");
                        return;
                    }
                }
                Err(_) => {
                    tracing::debug!(discarded, "lingering close: time bound reached");
                    return;
                }
            }
        }
    }
}
