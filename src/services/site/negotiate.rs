//! What a request's headers ask of a static file: `If-None-Match`, `Range` with `If-Range`, and
//! `Accept-Encoding`.

use http::header::{ACCEPT_ENCODING, HeaderMap, HeaderValue, IF_NONE_MATCH, IF_RANGE, RANGE};

/// Whether `If-None-Match` names the file's current ETag (or `*`): the client's copy is current.
pub(super) fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            // Weak comparison, as RFC 9110 asks for If-None-Match.
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag
        })
    })
}

/// The part of a file a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Range {
    /// All of it: no `Range`, one that is not understood, several ranges, or an `If-Range`
    /// that names another version.
    Whole,
    /// The bytes from the first to the second, both included.
    Part(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// The range `Range` asks of a file of `len` bytes whose ETag is `etag`.
pub(super) fn range(headers: &HeaderMap, etag: &HeaderValue, len: u64) -> Range {
    let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Range::Whole;
    };
    if let Some(condition) = headers.get(IF_RANGE)
        // Strong comparison, as RFC 9110 asks for If-Range; a date is never this server's.
        && condition.as_bytes() != etag.as_bytes()
    {
        return Range::Whole;
    }
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        // A Range that is not `bytes=...` as RFC 9110 writes it is ignored, as it allows.
        return Range::Whole;
    };
    match parsed.validate(len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Range::Part(*one.start(), *one.end()),
            // Several ranges would take a multipart answer: the whole file is one too.
            _ => Range::Whole,
        },
        Err(_) => Range::Unsatisfiable,
    }
}

/// Whether `Accept-Encoding` takes gzip (by name or `*`, with a weight above 0).
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
            let accepted = weight.is_some_and(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(accepted);
            } else if coding == "*" {
                any = Some(accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const TAG: HeaderValue = HeaderValue::from_static("\"abc\"");

    #[test]
    fn if_none_match_compares_weakly_in_a_list() {
        assert!(none_match(&headers(&[("if-none-match", "\"abc\"")]), &TAG));
        assert!(none_match(
            &headers(&[("if-none-match", "\"x\", W/\"abc\"")]),
            &TAG
        ));
        assert!(none_match(&headers(&[("if-none-match", "*")]), &TAG));
        assert!(!none_match(
            &headers(&[("if-none-match", "\"abcd\"")]),
            &TAG
        ));
        assert!(!none_match(&headers(&[]), &TAG));
    }

    #[test]
    fn ranges_one_or_whole_or_unsatisfiable() {
        let of = |pairs: &[(&'static str, &'static str)]| range(&headers(pairs), &TAG, 100);
        assert_eq!(of(&[]), Range::Whole);
        assert_eq!(of(&[("range", "bytes=0-9")]), Range::Part(0, 9));
        assert_eq!(of(&[("range", "bytes=90-")]), Range::Part(90, 99));
        assert_eq!(of(&[("range", "bytes=-5")]), Range::Part(95, 99));
        assert_eq!(of(&[("range", "bytes=95-200")]), Range::Part(95, 99));
        assert_eq!(of(&[("range", "bytes=100-")]), Range::Unsatisfiable);
        assert_eq!(of(&[("range", "bytes=0-1, 5-6")]), Range::Whole);
        assert_eq!(of(&[("range", "lines=1-2")]), Range::Whole);
        assert_eq!(
            of(&[("range", "bytes=0-9"), ("if-range", "\"abc\"")]),
            Range::Part(0, 9)
        );
        assert_eq!(
            of(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]),
            Range::Whole
        );
    }

    #[test]
    fn gzip_by_name_or_star_unless_weighed_zero() {
        let of = |value: &'static str| accepts_gzip(&headers(&[("accept-encoding", value)]));
        assert!(of("gzip, deflate, br"));
        assert!(of("br;q=1.0, gzip;q=0.8"));
        assert!(of("*"));
        assert!(!of("gzip;q=0"));
        assert!(!of("*, gzip;q=0"));
        assert!(!of("br"));
        assert!(!of("identity"));
        assert!(!accepts_gzip(&headers(&[])));
    }
}
