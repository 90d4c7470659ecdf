//! Newtypes for manifest values: each rejects a bad value while parsing, saying what is allowed.

use std::fmt;

use serde::Deserialize;

use crate::spec::schedule::Schedule;

/// The longest Micro name, as on Space.
pub const MAX_NAME_LEN: usize = 32;
/// The longest action id.
pub const MAX_ACTION_ID_LEN: usize = 32;
/// The longest free-text value (`app_name`, `version`).
pub const MAX_TEXT_LEN: usize = 128;

/// Whether `s` matches `^[A-Za-z0-9][A-Za-z0-9_-]*$`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map(|()| Self(value))
            }
        }

        impl $name {
            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_string())
            }
        }
    };
}

string_newtype!(
    /// `name = "web"`: a Micro's name, `^[A-Za-z0-9][A-Za-z0-9_-]*$`, at most 32 characters.
    MicroName,
    |s| {
        if s.len() > MAX_NAME_LEN {
            return Err(format!("`{s}` is {} characters long; a Micro name has at most {MAX_NAME_LEN}", s.len()));
        }
        if !is_identifier(s) {
            return Err(format!(
                "`{s}` is not a valid Micro name: use letters, digits, `_` and `-`, starting with a letter or digit"
            ));
        }
        Ok(())
    }
);

string_newtype!(
    /// `path = "/api"`: where a non-primary Micro is served, one segment such as `/api`.
    MicroPath,
    |s| {
        let Some(segment) = s.strip_prefix('/') else {
            return Err(format!("`{s}` must start with `/`, e.g. `/api`"));
        };
        if segment.is_empty() {
            return Err("`/` belongs to the primary Micro: give this Micro its own path, e.g. `/api`".into());
        }
        if !is_identifier(segment) || segment.len() > MAX_NAME_LEN {
            return Err(format!(
                "`{s}` must be one path segment of letters, digits, `_` and `-` (at most {MAX_NAME_LEN}), e.g. `/api`"
            ));
        }
        Ok(())
    }
);

string_newtype!(
    /// `name = "GREETING"`: an environment variable a Micro declares, `^[A-Za-z_][A-Za-z0-9_]*$`.
    EnvName,
    |s| {
        let mut chars = s.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "`{s}` is not a valid variable name: use letters, digits and `_`, not starting with a digit"
            ));
        }
        if s == "PORT" || s.starts_with("DETA_") {
            return Err(format!("`{s}` is set by the runtime; choose another name for the preset"));
        }
        Ok(())
    }
);

string_newtype!(
    /// `id = "cleanup"`: an action's id, unique in the app.
    ActionId,
    |s| {
        if s.len() > MAX_ACTION_ID_LEN || !is_identifier(s) {
            return Err(format!(
                "`{s}` is not a valid action id: use at most {MAX_ACTION_ID_LEN} letters, digits, `_` and `-`"
            ));
        }
        Ok(())
    }
);

string_newtype!(
    /// `public_routes = ["/public/*"]`: a route pattern, relative to the Micro's own path.
    RoutePattern,
    |s| {
        if !s.starts_with('/') {
            return Err(format!("`{s}` must start with `/`, e.g. `/public/*`"));
        }
        if s.contains(['?', '#']) {
            return Err(format!(
                "`{s}` has a query or fragment: a public route matches the path only, e.g. `/search`"
            ));
        }
        Ok(())
    }
);

/// `default_interval = "0/15 * * * *"`: a five-field cron expression or a rate like `5 minutes`,
/// parsed (and so checked) when the manifest is read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Interval {
    text: String,
    schedule: Schedule,
}

impl TryFrom<String> for Interval {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let schedule = Schedule::parse(&text)?;
        Ok(Self { text, schedule })
    }
}

impl Interval {
    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// When the action runs.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

string_newtype!(
    /// Free text such as `app_name` and `version`: 1 to 128 characters, no control characters.
    Text,
    |s| {
        if s.is_empty() || s.len() > MAX_TEXT_LEN || s.chars().any(char::is_control) {
            return Err(format!("must be 1 to {MAX_TEXT_LEN} characters without control characters"));
        }
        Ok(())
    }
);

/// `engine = "wasm32-wasip2"` (the default) or `engine = "static"`: how a Micro answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Engine {
    /// A `wasm32-wasip2` component, run in a fresh sandbox for each request.
    #[default]
    Component,
    /// Files from a folder, served as they are: no code runs.
    Static,
}

impl TryFrom<String> for Engine {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            super::ENGINE => return Ok(Engine::Component),
            super::STATIC_ENGINE => return Ok(Engine::Static),
            _ => {}
        }
        let front_ends = ["react", "vue", "svelte", "next", "nuxt"];
        let runtimes = ["python3.8", "python3.9", "nodejs14", "nodejs16", "nodejs18"];
        if front_ends.contains(&value.as_str()) {
            Err(format!(
                "Deta's `{value}` engine is not an engine here: build the front end with \
                 `commands` and serve its output with engine = \"static\" and `serve` = the \
                 output folder (`micros import` writes this from a Space app's `Spacefile`)"
            ))
        } else if runtimes.contains(&value.as_str()) || value == "custom" {
            Err(format!(
                "Deta's `{value}` engine is not supported: micros runs WebAssembly components; \
                 compile the Micro to a `wasm32-wasip2` component and set engine = \
                 \"wasm32-wasip2\" (or remove `engine`); `micros import` translates a Space \
                 app's `Spacefile`"
            ))
        } else {
            Err(format!(
                "unknown engine `{value}`: the engines are \"wasm32-wasip2\" (the default) and \
                 \"static\""
            ))
        }
    }
}

/// `trigger = "schedule"`: the only action trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Trigger;

impl TryFrom<String> for Trigger {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "schedule" {
            Ok(Trigger)
        } else {
            Err(format!(
                "unknown trigger `{value}`: the only trigger is \"schedule\""
            ))
        }
    }
}

/// `v = 1`: the manifest format version.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Version;

impl TryFrom<i64> for Version {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        if value == 1 {
            Ok(Version)
        } else {
            Err(format!(
                "manifest version {value} is not supported: set `v = 1`"
            ))
        }
    }
}

/// Whether `s` is a DNS host name: dot-separated labels of letters, digits and `-`.
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `allowed_outbound_hosts = ["https://api.example.com", "https://*.example.org:8443"]`: a
/// destination a Micro may reach: a scheme (`http` or `https`), a host name (a leading `*.`
/// matches any subdomain) or IP address, and a port (default: the scheme's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OutboundHost {
    https: bool,
    /// The host, lowercase; `*.example.org` kept with its star.
    host: String,
    port: u16,
}

impl TryFrom<String> for OutboundHost {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let wrong = |why: &str| {
            format!(
                "`{value}` {why}; write `https://host`, `https://host:port` or `https://*.domain`"
            )
        };
        let (https, rest) = if let Some(rest) = value.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = value.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(wrong("has no `http://` or `https://`"));
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(wrong("has more than a scheme, a host and a port"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| wrong("has a port that is not a number from 1 to 65535"))?;
                (host, port)
            }
            _ => (rest, if https { 443 } else { 80 }),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if host.parse::<std::net::IpAddr>().is_err() && !is_host_name(name) {
            return Err(wrong("has no valid host"));
        }
        Ok(Self { https, host, port })
    }
}

impl OutboundHost {
    /// Whether a request to `host:port` (`https` or not) is one this entry allows.
    pub fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_hosts() {
        let host = |s: &str| OutboundHost::try_from(s.to_string());
        let api = host("https://api.example.com").unwrap();
        assert!(api.matches(true, "api.example.com", 443));
        assert!(!api.matches(false, "api.example.com", 443));
        assert!(!api.matches(true, "api.example.com", 8443));
        let any = host("https://*.example.org:8443").unwrap();
        assert!(any.matches(true, "a.example.org", 8443));
        assert!(any.matches(true, "a.b.example.org", 8443));
        assert!(!any.matches(true, "example.org", 8443));
        assert!(!any.matches(true, "badexample.org", 8443));
        assert!(
            host("http://127.0.0.1:8080")
                .unwrap()
                .matches(false, "127.0.0.1", 8080)
        );
        assert!(
            host("http://[::1]:8080")
                .unwrap()
                .matches(false, "::1", 8080)
        );
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://x:0",
            "https://",
            "https://a..b",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn micro_names() {
        assert!(MicroName::try_from("web".to_string()).is_ok());
        assert!(MicroName::try_from("a-b_1".to_string()).is_ok());
        assert!(MicroName::try_from("-web".to_string()).is_err());
        assert!(MicroName::try_from("w.eb".to_string()).is_err());
        assert!(MicroName::try_from("a".repeat(33)).is_err());
        assert!(MicroName::try_from("a".repeat(32)).is_ok());
    }

    #[test]
    fn micro_paths() {
        assert!(MicroPath::try_from("/api".to_string()).is_ok());
        assert!(MicroPath::try_from("api".to_string()).is_err());
        assert!(MicroPath::try_from("/".to_string()).is_err());
        assert!(MicroPath::try_from("/a/b".to_string()).is_err());
        assert!(MicroPath::try_from("/__space".to_string()).is_err());
    }

    #[test]
    fn intervals() {
        for ok in [
            "0/15 * * * *",
            "5 minutes",
            "1 hour",
            "2 days",
            "0 9 * * mon-fri",
        ] {
            assert!(Interval::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "0 minutes",
            "5 weeks",
            "* * * *",
            "* * * * * *",
            "0 0 1 * 1",
        ] {
            assert!(Interval::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
