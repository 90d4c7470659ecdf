//! The request framing rules of HTTP/1.1 that hyper leaves to the server, where a server that sits
//! behind other proxies must not guess (RFC 9112): a request without exactly one `Host`, and a
//! transfer coding other than `chunked`, are refused before anything else sees them.
//!
//! hyper itself refuses the rest with 400: a `Transfer-Encoding` whose last coding is not
//! `chunked`, one in an HTTP/1.0 request, `Content-Length`s that disagree, a malformed head. A
//! request with both `Content-Length` and `Transfer-Encoding` is read by its chunks alone and
//! its connection closed after the answer, as RFC 9112 §6.3 asks.

use http::header::{HOST, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode, Version};

/// Why a request is refused at the front door: its status and what the client is told.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    /// 400 or 501.
    pub(super) status: StatusCode,
    /// One line for the client, naming the rule.
    pub(super) message: &'static str,
}

/// The refusal of a request with this version and these headers, if it breaks a rule.
pub(super) fn check(version: Version, headers: &HeaderMap) -> Option<Refusal> {
    let hosts = headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Some(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "more than one Host header (RFC 9112 §3.2): send exactly one",
        });
    }
    if hosts == 0 && version == Version::HTTP_11 {
        return Some(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)",
        });
    }
    // hyper has checked that the last coding is `chunked`: any other before it is one this
    // server cannot decode, and passing it on would leave the guest to guess.
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    if codings.any(|coding| !coding.eq_ignore_ascii_case(b"chunked")) {
        return Some(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "no transfer coding but `chunked` is supported (RFC 9112 §6.1): send the body \
                      chunked, or with a Content-Length",
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    fn status(version: Version, pairs: &[(&'static str, &'static str)]) -> Option<u16> {
        check(version, &headers(pairs)).map(|r| r.status.as_u16())
    }

    #[test]
    fn one_host_is_required_in_http_1_1() {
        assert_eq!(status(Version::HTTP_11, &[("host", "a")]), None);
        assert_eq!(status(Version::HTTP_11, &[]), Some(400));
        assert_eq!(status(Version::HTTP_10, &[]), None);
        assert_eq!(
            status(Version::HTTP_11, &[("host", "a"), ("host", "b")]),
            Some(400)
        );
        assert_eq!(
            status(Version::HTTP_10, &[("host", "a"), ("host", "a")]),
            Some(400)
        );
    }

    #[test]
    fn only_chunked_is_decoded() {
        let host = ("host", "a");
        for ok in ["chunked", "Chunked", " chunked ", "chunked,"] {
            assert_eq!(
                status(Version::HTTP_11, &[host, ("transfer-encoding", ok)]),
                None,
                "{ok}"
            );
        }
        for unsupported in ["gzip, chunked", "identity,chunked", "x-custom , chunked"] {
            assert_eq!(
                status(
                    Version::HTTP_11,
                    &[host, ("transfer-encoding", unsupported)]
                ),
                Some(501),
                "{unsupported}"
            );
        }
        assert_eq!(
            status(
                Version::HTTP_11,
                &[
                    host,
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Some(501)
        );
    }
}
