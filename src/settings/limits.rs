//! The limits of every execution, of the front door and of compiling, with their defaults: plain
//! data, and the parsers of the sizes, durations and networks that set them.

use std::time::Duration;

use anyhow::Context as _;

/// Memory of one execution, all linear memories summed: Space's 512 MB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 512 * 1024 * 1024;
/// Wall-clock time of one execution, instantiation to the end of the response: Space's 20 s.
pub const DEFAULT_EXECUTION_TIME: Duration = Duration::from_secs(20);
/// Largest request body: Space's 5.5 MB payload limit (5.5 MiB).
pub const DEFAULT_REQUEST_BODY_LIMIT: u64 = 5_767_168;
/// Largest response body: Space's 5.5 MB payload limit (5.5 MiB).
pub const DEFAULT_RESPONSE_BODY_LIMIT: u64 = 5_767_168;
/// Guest stdout and stderr logged per execution, together; past it a marker says what was dropped.
/// Generous for logs, small enough that a guest printing in a loop cannot grow the host's logs
/// without bound.
pub const DEFAULT_GUEST_OUTPUT_LIMIT: u64 = 256 * 1024;
/// Executions of one Micro in flight at once: Space's 1024 processes/threads per Micro. A
/// `wasm32-wasip2` component has no threads, so the honest equivalent is concurrent executions;
/// the next one is refused with 503 and `Retry-After` rather than queued without bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Resource handles (request, headers, streams, files...) one execution may hold at once. Each
/// lives in host memory, outside the memory limit, so a guest making handles in a loop must hit
/// a wall long before the host feels it; 16,384 is far above what a request handler uses.
pub const DEFAULT_MAX_HANDLES: usize = 16_384;
/// Core instances in one execution's store: a Rust component has a handful, an interpreter
/// built as a component a few dozen.
pub const DEFAULT_MAX_INSTANCES: usize = 256;
/// Linear memories in one execution's store (their bytes are capped by the memory limit).
pub const DEFAULT_MAX_MEMORIES: usize = 32;
/// Tables in one execution's store.
pub const DEFAULT_MAX_TABLES: usize = 256;
/// Table elements of one execution, all tables summed: host memory (8 bytes or more each)
/// outside the memory limit.
pub const DEFAULT_MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Bytes of file data in a Micro's `/tmp`, all its executions together: Space's 512 MB. Counted
/// by logical size, so a sparse file or a `set-size` counts in full.
pub const DEFAULT_TMP_BYTES: u64 = 512 * 1024 * 1024;
/// Bytes of an app's data (Base items, Drive files, unfinished uploads), all its Micros
/// together: plenty for the small apps Space hosted, and a bound on how much of the host's disk
/// one app (a hostile Micro writing in a loop) can take.
pub const DEFAULT_DATA_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Files, folders and links in a Micro's `/tmp`: each costs the host an inode whatever its size,
/// so a guest creating empty files in a loop meets a wall as it would on a real disk.
pub const DEFAULT_TMP_ENTRIES: u64 = 65_536;
/// Time compiling one component may take at load. A Micro compiles in a second or two; a
/// component built from an interpreter (Python, JavaScript) in tens of seconds on two cores.
pub const DEFAULT_COMPILE_TIME: Duration = Duration::from_secs(120);
/// Growth of the runtime's resident memory while one component compiles: a crafted component can
/// make the compiler take hundreds of MB; real ones, interpreters included, stay well below.
pub const DEFAULT_COMPILE_MEMORY: u64 = 2 * 1024 * 1024 * 1024;
/// Time a client has to send a request's headers (slowloris); also how long an idle keep-alive
/// connection waits for its next request.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a request body may go without sending data before it is cut off (408 if the guest has not
/// started; else the guest's read fails). Slow senders cannot hold a slot or a buffer forever.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further clients wait in the listen queue until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// After an answer that leaves request bytes unread (an early 413, 401, 431...), how long the
/// server goes on reading and discarding what the client still sends before it closes: a client
/// that writes its whole request before it reads (Python's `http.client`, `requests`) then reads
/// the answer instead of a reset. As nginx's `lingering_timeout` and `lingering_time` do; 5 s is
/// ample for the rest of a 5.5 MiB body on a slow link, and the connection's slot is held meanwhile.
pub const DEFAULT_LINGER_TIME: Duration = Duration::from_secs(5);
/// Bytes read and discarded while lingering, at most: about three times the largest request body
/// Space accepted, so a client sending a body over the limit is drained, and no more.
pub const DEFAULT_LINGER_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of request line and headers accepted (431 past it). Half of the guest's own 128 KiB
/// field limit, so no header the front door lets in can trap a guest.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Request headers accepted (431 past it), hyper's default.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Where `micros up` listens unless told otherwise, as Space's local dev server did.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4200";
/// The state folder's name beside the manifest.
pub const DEFAULT_STATE_DIR: &str = ".micros";

/// The limits of one execution (an HTTP request or, later, an action). Only the operator sets
/// them; the manifest cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory all memories of an instance may hold together.
    pub memory: u64,
    /// Wall-clock time from instantiation to the end of the response body.
    pub execution_time: Duration,
    /// Bytes of request body accepted.
    pub request_body: u64,
    /// Bytes of response body sent.
    pub response_body: u64,
    /// Bytes of guest stdout and stderr logged per execution.
    pub guest_output: u64,
    /// Executions of one Micro in flight at once; past it, 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Resource handles one execution may hold at once; past it, the call traps.
    pub max_handles: usize,
    /// Core instances per store.
    pub max_instances: usize,
    /// Linear memories per store.
    pub max_memories: usize,
    /// Tables per store.
    pub max_tables: usize,
    /// Table elements per store, all tables summed.
    pub max_table_elements: usize,
    /// Bytes of file data in a Micro's `/tmp`, shared by all its executions.
    pub tmp_bytes: u64,
    /// Files, folders and links in a Micro's `/tmp`, shared by all its executions.
    pub tmp_entries: u64,
    /// Bytes of the app's data (Base and Drive, as stored), all its Micros and its owner
    /// together; past it, writes are refused with 507 and reads and deletes still work.
    pub data_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY_LIMIT,
            execution_time: DEFAULT_EXECUTION_TIME,
            request_body: DEFAULT_REQUEST_BODY_LIMIT,
            response_body: DEFAULT_RESPONSE_BODY_LIMIT,
            guest_output: DEFAULT_GUEST_OUTPUT_LIMIT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_handles: DEFAULT_MAX_HANDLES,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memories: DEFAULT_MAX_MEMORIES,
            max_tables: DEFAULT_MAX_TABLES,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            tmp_bytes: DEFAULT_TMP_BYTES,
            tmp_entries: DEFAULT_TMP_ENTRIES,
            data_bytes: DEFAULT_DATA_BYTES,
        }
    }
}

/// The limits of the front door: what a client must do before any Micro is involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontDoor {
    /// Time to send the request line and headers, and to send the next request on an idle
    /// keep-alive connection; the connection is closed past it.
    pub header_read_timeout: Duration,
    /// Bytes of request line and headers; 431 past it.
    pub max_header_bytes: usize,
    /// Number of request headers; 431 past it.
    pub max_headers: usize,
    /// Time a request body may go without sending data.
    pub body_read_timeout: Duration,
    /// Connections served at once; further clients wait until one closes.
    pub max_connections: usize,
    /// Time spent reading and discarding a client's unread bytes after an early answer, before
    /// the connection closes ([`DEFAULT_LINGER_TIME`]).
    pub linger_time: Duration,
    /// Bytes read and discarded after an early answer, at most ([`DEFAULT_LINGER_BYTES`]).
    pub linger_bytes: u64,
    /// Proxies whose `X-Forwarded-For` and `Forwarded` are extended rather than replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for FrontDoor {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            linger_time: DEFAULT_LINGER_TIME,
            linger_bytes: DEFAULT_LINGER_BYTES,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What compiling one component at load may cost before it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileBudget {
    /// Wall-clock time.
    pub time: Duration,
    /// Growth of the runtime's resident memory (enforced on Linux).
    pub memory: u64,
}

impl Default for CompileBudget {
    fn default() -> Self {
        Self {
            time: DEFAULT_COMPILE_TIME,
            memory: DEFAULT_COMPILE_MEMORY,
        }
    }
}

/// Parses a byte size such as `512MiB`, `5.5MiB` or `1000`.
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| anyhow::anyhow!("`{s}` is not a size such as `512MiB`: {e}"))?;
    Ok(size.as_u64())
}

/// Parses a network such as `10.0.0.0/8`, or one address (`10.0.0.7`, as `10.0.0.7/32`).
pub fn parse_net(s: &str) -> anyhow::Result<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            anyhow::anyhow!("`{s}` is not a network (10.0.0.0/8) or an address (10.0.0.7)")
        })
}

/// Parses a duration such as `20s` or `500ms`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(s)
        .with_context(|| format!("`{s}` is not a duration such as `20s` or `500ms`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("5.5MiB").unwrap(), DEFAULT_REQUEST_BODY_LIMIT);
        assert_eq!(parse_bytes("512MiB").unwrap(), DEFAULT_MEMORY_LIMIT);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration("20s").unwrap(), DEFAULT_EXECUTION_TIME);
        assert!(parse_duration("soon").is_err());
    }
}
