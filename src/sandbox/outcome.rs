//! How an execution ended: the outcomes a caller can branch on, and how a failed call is named.

use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

use crate::settings::limits::Limits;

/// Why an execution did not produce a complete response. [`ExecutionError::status`] maps each
/// to an HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecutionError {
    /// The request could not be read from the client (its body broke off, a header is not text).
    #[error("the request could not be read: {0}")]
    BadRequest(String),
    /// The path is under `/__space/`, the runtime's own namespace: no Micro sees it.
    #[error("`/__space/` is reserved for the runtime")]
    Reserved,
    /// The route is private and the request carried no valid credential (none, a wrong one, or
    /// an app key where the Micro takes none).
    #[error("no valid owner token or app key for a private route")]
    Unauthorized,
    /// The engine's pool of execution slots (memories, instances, stacks) is in use to the
    /// last one; retry shortly.
    #[error("the pool of {what} is full")]
    PoolFull {
        /// What ran out, as wasmtime names it (`memories`, `fibers`...).
        what: String,
    },
    /// The Micro already has as many executions in flight as allowed; retry shortly.
    #[error("{limit} executions already in flight")]
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The client stopped sending the request body; the guest never ran.
    #[error("no request body data for {limit:?}")]
    RequestTimeout {
        /// The limit.
        limit: std::time::Duration,
    },
    /// The request body is larger than the limit; the guest never ran.
    #[error("request body exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request asks for a protocol upgrade (websockets), which Micros cannot serve.
    #[error("protocol upgrades (websockets) are not supported")]
    UpgradeUnsupported,
    /// The guest tried to grow its memory past the limit.
    #[error("memory limit of {limit} bytes exceeded")]
    MemoryExceeded {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest held more resource handles than allowed.
    #[error("handle limit of {limit} exceeded")]
    HandlesExceeded {
        /// The limit.
        limit: usize,
    },
    /// The execution made more core instances, memories or tables than a store may hold.
    #[error("limit of {limit} {what} per execution exceeded")]
    StoreLimit {
        /// What was counted: `instances`, `memories` or `tables`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The execution ran past its wall-clock limit.
    #[error("execution time limit of {limit:?} exceeded")]
    Timeout {
        /// The limit.
        limit: std::time::Duration,
    },
    /// The response body is larger than the limit.
    #[error("response body exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest trapped (a panic, an abort, a wasm trap); the detail is for the log.
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The guest returned without sending a response.
    #[error("the guest returned without sending a response")]
    NoResponse,
    /// The guest answered with a `wasi:http` error instead of a response.
    #[error("the guest answered with an error: {0}")]
    GuestError(String),
    /// Streaming the guest's response body failed.
    #[error("the response body failed: {0}")]
    Body(String),
    /// The runtime could not set up the execution.
    #[error("the runtime could not start the execution: {0}")]
    Setup(String),
    /// The execution was stopped before it finished.
    #[error("the execution was stopped")]
    Aborted,
}

impl ExecutionError {
    /// A short, stable name for the log's `error.type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Reserved => "reserved",
            Self::Unauthorized => "auth",
            Self::Overloaded { .. } => "overloaded",
            Self::PoolFull { .. } => "pool_full",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::UpgradeUnsupported => "upgrade_unsupported",
            Self::MemoryExceeded { .. } => "memory_limit",
            Self::Timeout { .. } => "timeout",
            Self::HandlesExceeded { .. } => "handle_limit",
            Self::StoreLimit { .. } => "store_limit",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::Trap(_) => "trap",
            Self::NoResponse => "no_response",
            Self::GuestError(_) => "guest_error",
            Self::Body(_) => "body",
            Self::Setup(_) => "setup",
            Self::Aborted => "aborted",
        }
    }
}

pub(super) fn setup_error(error: &anyhow::Error) -> ExecutionError {
    ExecutionError::Setup(format!("{error:#}"))
}

/// Names the cause of a failed call: the memory limit, the time limit, or another trap.
pub(super) fn classify(
    error: &wasmtime::Error,
    memory_hit: bool,
    limits: &Limits,
) -> ExecutionError {
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        // `maximum concurrent limit of 8 for memories reached`
        let text = full.to_string();
        let what = text
            .split_once(" for ")
            .and_then(|(_, rest)| rest.strip_suffix(" reached"))
            .unwrap_or("execution slots");
        // wasmtime names its memory pool by stripe (`memory stripe 0`) and stacks `fibers`.
        let what = if what.starts_with("memory") {
            "memories"
        } else if what == "fibers" {
            "execution stacks"
        } else {
            what
        }
        .to_string();
        ExecutionError::PoolFull { what }
    } else if memory_hit {
        ExecutionError::MemoryExceeded {
            limit: limits.memory,
        }
    } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        ExecutionError::Timeout {
            limit: limits.execution_time,
        }
    } else if matches!(
        error.downcast_ref::<ResourceTableError>(),
        Some(ResourceTableError::Full)
    ) {
        ExecutionError::HandlesExceeded {
            limit: limits.max_handles,
        }
    } else if let Some((what, limit)) = store_limit(error, limits) {
        ExecutionError::StoreLimit { what, limit }
    } else {
        ExecutionError::Trap(format!("{error:?}"))
    }
}

/// Which per-store count wasmtime refused, from its message (`resource limit exceeded: memory
/// count too high at 33`); a test with a component past each limit pins the wording.
fn store_limit(error: &wasmtime::Error, limits: &Limits) -> Option<(&'static str, usize)> {
    let text = format!("{error:#}");
    let (_, rest) = text.split_once("resource limit exceeded: ")?;
    match rest.split(' ').next()? {
        "instance" => Some(("instances", limits.max_instances)),
        "memory" => Some(("memories", limits.max_memories)),
        "table" => Some(("tables", limits.max_tables)),
        _ => None,
    }
}
