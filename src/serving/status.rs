//! The one table from execution outcomes to HTTP statuses, and the short text a client gets.

use http::StatusCode;

use crate::sandbox::ExecutionError;

impl ExecutionError {
    /// The status a client gets when this error happens before the response head is sent.
    ///
    /// This is the table in `docs/limits.md` (Statuses); change both together.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Reserved => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Overloaded { .. } | Self::PoolFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpgradeUnsupported => StatusCode::NOT_IMPLEMENTED,
            Self::MemoryExceeded { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::HandlesExceeded { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::StoreLimit { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::Trap(_) | Self::NoResponse | Self::GuestError(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Body(_) | Self::Setup(_) | Self::Aborted => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The outcome in the access log and the metrics: `auth`, `timeout`, `memory`, `payload`,
    /// `limit`, `trap`, `overloaded`, `rejected` (a bad or misdirected request), `aborted` or
    /// `error`; a served request is `ok`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized => "auth",
            Self::Timeout { .. } | Self::RequestTimeout { .. } => "timeout",
            Self::MemoryExceeded { .. } => "memory",
            Self::RequestTooLarge { .. } | Self::ResponseTooLarge { .. } => "payload",
            Self::HandlesExceeded { .. } | Self::StoreLimit { .. } => "limit",
            Self::Trap(_) | Self::NoResponse | Self::GuestError(_) => "trap",
            Self::Overloaded { .. } | Self::PoolFull { .. } => "overloaded",
            Self::BadRequest(_) | Self::Reserved | Self::UpgradeUnsupported => "rejected",
            Self::Aborted => "aborted",
            Self::Body(_) | Self::Setup(_) => "error",
        }
    }

    /// A short fixed text for the client: names the limit, never the guest's internals (those go
    /// to the log).
    pub fn client_message(&self) -> String {
        match self {
            Self::BadRequest(_) => "the request could not be read".into(),
            Self::Reserved => "not found: `/__space/` belongs to the runtime".into(),
            Self::Unauthorized => "this route is private: send the owner token \
                (`Authorization: Bearer ...`, or log in at /__space/login) or, where the Micro \
                takes them, an app key (`X-Space-App-Key`)"
                .into(),
            Self::RequestTimeout { limit } => format!(
                "the request body stopped arriving (nothing for {})",
                humantime::format_duration(*limit)
            ),
            Self::Overloaded { limit } => {
                format!("{limit} executions already in flight, the limit; retry shortly")
            }
            Self::PoolFull { what } => {
                format!("the runtime's pool of {what} is in use; retry shortly")
            }
            Self::RequestTooLarge { limit } => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Self::UpgradeUnsupported => {
                "websocket and other protocol upgrades are not supported".into()
            }
            Self::MemoryExceeded { limit } => format!("memory limit of {limit} bytes exceeded"),
            Self::HandlesExceeded { limit } => format!("handle limit of {limit} exceeded"),
            Self::StoreLimit { what, limit } => {
                format!("limit of {limit} {what} per execution exceeded")
            }
            Self::Timeout { limit } => format!(
                "execution time limit of {} exceeded",
                humantime::format_duration(*limit)
            ),
            Self::ResponseTooLarge { limit } => {
                format!("response body exceeds the limit of {limit} bytes")
            }
            Self::Trap(_) => "the Micro crashed (trap or panic)".into(),
            Self::NoResponse => "the Micro returned without a response".into(),
            Self::GuestError(_) => "the Micro answered with an error instead of a response".into(),
            Self::Body(_) | Self::Setup(_) | Self::Aborted => "internal error".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(ExecutionError::RequestTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ExecutionError::UpgradeUnsupported.status(), 501);
        assert_eq!(ExecutionError::Reserved.status(), 404);
        assert_eq!(ExecutionError::Unauthorized.status(), 401);
        assert_eq!(ExecutionError::Unauthorized.outcome(), "auth");
        assert_eq!(ExecutionError::Overloaded { limit: 1 }.status(), 503);
        assert_eq!(
            ExecutionError::RequestTimeout {
                limit: std::time::Duration::from_secs(1)
            }
            .status(),
            408
        );
        assert_eq!(ExecutionError::MemoryExceeded { limit: 1 }.status(), 500);
        assert_eq!(
            ExecutionError::Timeout {
                limit: std::time::Duration::from_secs(20)
            }
            .status(),
            504
        );
        assert_eq!(ExecutionError::ResponseTooLarge { limit: 1 }.status(), 502);
        assert_eq!(ExecutionError::Trap("x".into()).status(), 500);
        assert_eq!(ExecutionError::NoResponse.status(), 500);
        assert_eq!(
            ExecutionError::Timeout {
                limit: std::time::Duration::from_secs(20)
            }
            .client_message(),
            "execution time limit of 20s exceeded"
        );
    }
}
