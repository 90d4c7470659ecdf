//! Who called: the client's address for the guest in `X-Forwarded-For` and `Forwarded`
//! (RFC 7239), trusted only from the operator's proxies, and hop-by-hop headers removed.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use ipnet::IpNet;

/// The address of the peer a request came from; the server puts it in each request's extensions.
/// An embedder calling [`crate::App::handle`] itself may set it too; without it, the request's
/// forwarding headers are passed on as they are (the embedder is then the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Headers that describe one hop, never meant to be passed on (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Forwarding headers a client could forge.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Rewrites a request's headers for the guest: hop-by-hop headers (and those `Connection`
/// names) go; the peer is added to `X-Forwarded-For` and `Forwarded`, extending what a trusted
/// proxy sent, replacing what anyone else sent.
pub(crate) fn apply(headers: &mut HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    remove_all(headers, HOP_BY_HOP);
    let Some(peer) = peer else {
        return;
    };
    if !trusted.iter().any(|net| net.contains(&peer)) {
        remove_all(headers, FORWARDING);
    }
    // Printed once: an address's `Display` is a good share of this function's time.
    let ip = peer.to_string();
    let node = match peer {
        IpAddr::V4(_) => format!("for={ip}"),
        IpAddr::V6(_) => format!("for=\"[{ip}]\""),
    };
    extend(headers, "x-forwarded-for", &ip);
    extend(headers, "forwarded", &node);
}

/// Removes every header named in `names`. Most requests carry none of them, and one pass over a
/// request's few headers costs less than a lookup per name (2.6% of a hello request's time went
/// to those lookups in a profile).
fn remove_all(headers: &mut HeaderMap, names: &[&str]) {
    if headers.keys().any(|key| names.contains(&key.as_str())) {
        for name in names {
            headers.remove(*name);
        }
    }
}

/// The client's address: the peer, or behind trusted proxies the nearest address in
/// `X-Forwarded-For` that is not one of them.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    Some(
        chain
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .copied()
            .unwrap_or(peer),
    )
}

/// Whether a trusted proxy says the client's connection was TLS (`X-Forwarded-Proto: https` or
/// `Forwarded: proto=https`, as the last hop wrote it). A direct client is never believed.
pub(crate) fn via_tls(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> bool {
    if !peer.is_some_and(|peer| trusted.iter().any(|net| net.contains(&peer))) {
        return false;
    }
    let last = |name: &str| -> Option<String> {
        let joined: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if joined.is_empty() {
            return None;
        }
        joined
            .join(",")
            .rsplit(',')
            .next()
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if let Some(proto) = last("x-forwarded-proto") {
        return proto == "https";
    }
    last("forwarded").is_some_and(|hop| {
        hop.split(';')
            .any(|pair| pair.trim().replace('"', "") == "proto=https")
    })
}

/// Appends `value` to the comma-separated list in header `name`, merging repeated fields.
fn extend(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if !headers.contains_key(name) {
        // The usual case: a client's own request, with no list to extend.
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
        return;
    }
    let mut list: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    list.push(value.to_string());
    if let Ok(joined) = HeaderValue::from_str(&list.join(", ")) {
        headers.insert(name, joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn an_untrusted_peer_replaces_what_it_claims() {
        let mut map = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        apply(&mut map, Some("203.0.113.9".parse().unwrap()), &[]);
        assert_eq!(map["x-forwarded-for"], "203.0.113.9");
        assert_eq!(map["forwarded"], "for=203.0.113.9");
        assert!(!map.contains_key("x-real-ip"));
    }

    #[test]
    fn a_trusted_proxy_is_extended() {
        let mut map = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
            ("forwarded", "for=198.51.100.1"),
        ]);
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        apply(&mut map, Some("10.1.2.3".parse().unwrap()), &trusted);
        assert_eq!(
            map["x-forwarded-for"],
            "198.51.100.1, 198.51.100.2, 10.1.2.3"
        );
        assert_eq!(map["forwarded"], "for=198.51.100.1, for=10.1.2.3");
        let mut map = HeaderMap::new();
        apply(&mut map, Some("2001:db8::1".parse().unwrap()), &trusted);
        assert_eq!(map["forwarded"], "for=\"[2001:db8::1]\"");
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let map = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.0.0.2")]);
        let proxy = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            client_ip(&map, proxy, &trusted),
            "198.51.100.1".parse().ok()
        );
        let stranger = Some("203.0.113.9".parse().unwrap());
        assert_eq!(client_ip(&map, stranger, &trusted), stranger);
        assert_eq!(client_ip(&HeaderMap::new(), proxy, &trusted), proxy);
    }

    #[test]
    fn tls_is_believed_only_from_a_trusted_proxy() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let proxy = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("203.0.113.9".parse().unwrap());
        let map = headers(&[("x-forwarded-proto", "http, https")]);
        assert!(via_tls(&map, proxy, &trusted));
        assert!(!via_tls(&map, stranger, &trusted));
        let map = headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=http, for=5.6.7.8;proto=\"https\"",
        )]);
        assert!(via_tls(&map, proxy, &trusted));
        assert!(!via_tls(&HeaderMap::new(), proxy, &trusted));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-kept", "1"),
        ]);
        apply(&mut map, None, &[]);
        let names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
