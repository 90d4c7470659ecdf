//! Which app a request is for, by its host: `<app>.<domain>`, a custom domain, or the server's
//! own host (the admin API). Host names are compared normalised (lower case, no port, no
//! trailing dot), and a request whose absolute-form target names another host than its `Host`
//! header is refused rather than guessed.

use std::collections::HashMap;
use std::net::IpAddr;

use http::header::HOST;
use http::{HeaderMap, Uri};

/// Longest app name: a DNS label.
pub(crate) const MAX_APP_NAME: usize = 63;

/// An app's name, which is also the first label of its host: 1 to 63 lower-case letters, digits
/// and `-`, neither first nor last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AppName(String);

impl AppName {
    /// The name as text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AppName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AppName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= MAX_APP_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an app name: 1 to {MAX_APP_NAME} lower-case letters, digits and `-` \
                 (not first or last), as it is the first label of the app's host"
            ))
        }
    }
}

/// A host name as requests are matched on: lower case, without port or trailing dot.
pub(crate) fn normalize(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // An IPv6 literal keeps its brackets; a port may follow them.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.split_once(':') {
            Some((name, _port)) => name,
            None => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// The host a request is for, normalised: its absolute-form target's, or its `Host` header's.
/// `Err` names the disagreement when both are given and differ.
pub(crate) fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<Option<String>, String> {
    let header = headers
        .get(HOST)
        .map(|v| v.to_str().map(normalize))
        .transpose()
        .map_err(|_| "the Host header is not text".to_string())?;
    let target = uri.authority().map(|a| normalize(a.as_str()));
    match (target, header) {
        (Some(target), Some(header)) if target != header => Err(format!(
            "the request's target names host `{target}` but its Host header `{header}`: send \
             one host"
        )),
        (Some(target), _) => Ok(Some(target)),
        (None, header) => Ok(header),
    }
}

/// Where a host leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The server's own host: the admin API.
    Server,
    /// An app.
    App(AppName),
    /// Nothing here.
    Unknown,
}

/// The map from host names to apps: `<app>.<domain>` for every app, and custom domains.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// The server's domain, normalised (`localhost`, `example.com`).
    domain: String,
    /// Custom domains, normalised, to their apps.
    custom: HashMap<String, AppName>,
}

impl Hosts {
    /// Hosts under `domain`, with these custom ones.
    pub(crate) fn new(domain: &str, custom: impl IntoIterator<Item = (String, AppName)>) -> Self {
        Self {
            domain: normalize(domain),
            custom: custom
                .into_iter()
                .map(|(host, app)| (normalize(&host), app))
                .collect(),
        }
    }

    /// The primary host of `app`: `<app>.<domain>`.
    pub(crate) fn primary(&self, app: &AppName) -> String {
        format!("{app}.{}", self.domain)
    }

    /// Where a normalised `host` leads. The server's own host is its domain, or an address
    /// (a client that reaches the server without a name).
    pub(crate) fn destination(&self, host: &str) -> Destination {
        if host == self.domain
            || host.parse::<IpAddr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<IpAddr>().is_ok())
        {
            return Destination::Server;
        }
        if let Some(app) = self.custom.get(host) {
            return Destination::App(app.clone());
        }
        match host
            .strip_suffix(&self.domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .map(str::parse::<AppName>)
        {
            Some(Ok(app)) => Destination::App(app),
            _ => Destination::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> Destination {
        Destination::App(name.parse().unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn hosts_are_normalised() {
        for (given, normal) in [
            ("Notes.Example.COM", "notes.example.com"),
            ("notes.example.com.", "notes.example.com"),
            ("notes.example.com:8443", "notes.example.com"),
            ("notes.example.com.:80", "notes.example.com"),
            ("127.0.0.1:4200", "127.0.0.1"),
            ("[::1]:4200", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(normalize(given), normal, "{given}");
        }
    }

    #[test]
    fn a_host_leads_to_one_app_or_none() {
        let hosts = Hosts::new(
            "Example.com",
            [(
                "Notes.Example.org.".to_string(),
                "notes".parse().unwrap_or_else(|e| panic!("{e}")),
            )],
        );
        assert_eq!(hosts.destination("notes.example.com"), app("notes"));
        assert_eq!(hosts.destination("notes.example.org"), app("notes"));
        assert_eq!(hosts.destination("example.com"), Destination::Server);
        assert_eq!(hosts.destination("127.0.0.1"), Destination::Server);
        assert_eq!(hosts.destination("[::1]"), Destination::Server);
        // Two labels, a bad label, another domain, a suffix that only looks like the domain.
        for unknown in [
            "a.notes.example.com",
            "-x.example.com",
            "notes.example.net",
            "notesexample.com",
            "",
        ] {
            assert_eq!(
                hosts.destination(unknown),
                Destination::Unknown,
                "{unknown}"
            );
        }
    }

    #[test]
    fn a_target_and_a_host_that_disagree_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, http::HeaderValue::from_static("Notes.example.com:80"));
        let origin: Uri = "/x".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            request_host(&origin, &headers),
            Ok(Some("notes.example.com".into()))
        );
        let same: Uri = "http://notes.example.com./x"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            request_host(&same, &headers),
            Ok(Some("notes.example.com".into()))
        );
        let other: Uri = "http://todo.example.com/x"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(request_host(&other, &headers).is_err());
    }

    #[test]
    fn app_names_are_dns_labels() {
        for good in ["a", "notes", "my-app-2", &"x".repeat(63)] {
            assert!(good.parse::<AppName>().is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64), "é"] {
            assert!(bad.parse::<AppName>().is_err(), "{bad}");
        }
    }
}
