//! The flag groups of `micros up`, `micros server` and `micros trigger`: each a clap `Args`
//! with the library type it becomes.

use std::time::Duration;

use clap::Args;
use micros::Limits;

/// Where Micros may send outbound HTTP beyond the public internet, and its limits.
#[derive(Args)]
pub(crate) struct OutboundArgs {
    /// Also allow outbound HTTP to a network or host (loopback, private... are closed by
    /// default): `10.0.0.0/8`, `127.0.0.1`, `api.internal`. Repeatable.
    #[arg(long = "allow-outbound", value_name = "CIDR|HOST")]
    allow: Vec<micros::AllowOutbound>,
    /// Time to resolve, connect and shake hands with an outbound destination.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = micros::config::parse_duration)]
    outbound_connect_timeout: Duration,
    /// Time from an outbound request to its response head.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = micros::config::parse_duration)]
    outbound_first_byte_timeout: Duration,
    /// Outbound requests one execution may have open at once.
    #[arg(long, value_name = "N", default_value_t = micros::outbound::DEFAULT_MAX_OUTBOUND)]
    max_outbound: usize,
}

impl From<OutboundArgs> for micros::OutboundConfig {
    fn from(args: OutboundArgs) -> Self {
        micros::OutboundConfig {
            allow: args.allow,
            connect_timeout: args.outbound_connect_timeout,
            first_byte_timeout: args.outbound_first_byte_timeout,
            max_concurrent: args.max_outbound,
        }
    }
}

/// The threads a serving command runs on.
#[derive(Args)]
pub(crate) struct RuntimeArgs {
    /// Threads that serve requests and run executions (default: one per core, which serves
    /// every kind of Micro best since wasmtime 50: BENCHMARKS.md, 29.).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
}

/// What compiling one component at load may cost before it is refused.
#[derive(Args)]
pub(crate) struct CompileArgs {
    /// Time compiling one component may take.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = micros::config::parse_duration)]
    compile_timeout: Duration,
    /// Growth of the runtime's memory while one component compiles.
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = micros::config::parse_bytes)]
    compile_memory: u64,
}

impl From<CompileArgs> for micros::CompileBudget {
    fn from(args: CompileArgs) -> Self {
        micros::CompileBudget {
            time: args.compile_timeout,
            memory: args.compile_memory,
        }
    }
}

/// The front door's limits: what a client must do before any Micro is involved.
#[derive(Args)]
pub(crate) struct FrontDoorArgs {
    /// Time to send a request's headers, and to start the next request on an idle connection.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = micros::config::parse_duration)]
    header_read_timeout: Duration,
    /// Bytes of request line and headers; 431 past it.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = micros::config::parse_bytes)]
    max_header_size: u64,
    /// Number of request headers; 431 past it.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_HEADERS)]
    max_headers: usize,
    /// Time a request body may go without sending data.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = micros::config::parse_duration)]
    body_read_timeout: Duration,
    /// Connections served at once; further clients wait until one closes.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// After an early answer (413, 401, 431...), time spent reading and discarding what the client
    /// still sends before closing, so that it reads the answer instead of a reset.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = micros::config::parse_duration)]
    linger_time: Duration,
    /// Bytes read and discarded after an early answer, at most.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = micros::config::parse_bytes)]
    linger_bytes: u64,
    /// A proxy (network or address) whose X-Forwarded-For and Forwarded headers are trusted and
    /// extended; from anyone else they are replaced. Repeatable.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = micros::config::parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl From<FrontDoorArgs> for micros::FrontDoor {
    fn from(args: FrontDoorArgs) -> Self {
        micros::FrontDoor {
            header_read_timeout: args.header_read_timeout,
            max_header_bytes: usize::try_from(args.max_header_size).unwrap_or(usize::MAX),
            max_headers: args.max_headers,
            body_read_timeout: args.body_read_timeout,
            max_connections: args.max_connections,
            linger_time: args.linger_time,
            linger_bytes: args.linger_bytes,
            trusted_proxies: args.trusted_proxies,
        }
    }
}

/// The operator's limits; each defaults to Space's.
#[derive(Args)]
pub(crate) struct LimitArgs {
    /// Memory of one execution, all linear memories summed.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = micros::config::parse_bytes)]
    memory_limit: u64,
    /// Wall-clock time of one execution, to the end of the response body.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = micros::config::parse_duration)]
    timeout: Duration,
    /// Largest request body.
    #[arg(long, value_name = "SIZE", default_value = "5.5MiB", value_parser = micros::config::parse_bytes)]
    max_request_body: u64,
    /// Largest response body.
    #[arg(long, value_name = "SIZE", default_value = "5.5MiB", value_parser = micros::config::parse_bytes)]
    max_response_body: u64,
    /// Resource handles one execution may hold at once; past it, the guest traps.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_HANDLES)]
    max_handles: usize,
    /// Executions of one Micro in flight at once; the next gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Guest stdout and stderr logged per execution.
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = micros::config::parse_bytes)]
    guest_log_limit: u64,
    /// Bytes of file data in each Micro's /tmp, all its executions together.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = micros::config::parse_bytes)]
    tmp_limit: u64,
    /// Files, folders and links in each Micro's /tmp.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_TMP_ENTRIES)]
    tmp_entries: u64,
    /// The app's data (Base items, Drive files), as stored; past it, writes get 507.
    #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = micros::config::parse_bytes)]
    data_limit: u64,
}

impl From<LimitArgs> for Limits {
    fn from(args: LimitArgs) -> Self {
        Limits {
            memory: args.memory_limit,
            execution_time: args.timeout,
            request_body: args.max_request_body,
            response_body: args.max_response_body,
            guest_output: args.guest_log_limit,
            max_in_flight: args.max_in_flight,
            max_handles: args.max_handles,
            tmp_bytes: args.tmp_limit,
            tmp_entries: args.tmp_entries,
            data_bytes: args.data_limit,
            ..Limits::default()
        }
    }
}
