//! Outbound HTTP from Micros (`wasi:http/outgoing-handler`): where a guest may connect, checked on
//! the address actually dialled, with timeouts and a cap per execution.
//!
//! The public internet is allowed, as on Space; loopback, private, link-local (cloud metadata),
//! unique-local, multicast and other special addresses are not, unless the operator allows them
//! (`--allow-outbound`). A Micro may narrow its own reach (`allowed_outbound_hosts`). The name is
//! resolved here and the connection made to the very address that was checked, so DNS rebinding
//! (a name that resolves to a public address when checked and a private one when dialled) cannot
//! get around it.

mod ranges;
mod send;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::sandbox::OutgoingHttp;
use crate::spec::manifest::OutboundHost;
use ranges::{canonical, forbidden};
use send::{Timeouts, send};

/// Time to resolve a name and establish a connection (TLS included).
pub const DEFAULT_OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from sending a request to the response head. The execution's own time limit bounds
/// everything else.
pub const DEFAULT_OUTBOUND_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Outbound requests one execution may have open at once: enough for a fan-out, not a flood.
pub const DEFAULT_MAX_OUTBOUND: usize = 16;

/// An operator's widening of the outbound rules: a network, or a host name whose addresses are
/// all allowed. `--allow-outbound 127.0.0.1/32`, `--allow-outbound 10.0.0.7`,
/// `--allow-outbound api.internal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOutbound {
    /// Every address in this network.
    Net(IpNet),
    /// Every address this name resolves to.
    Host(String),
}

impl FromStr for AllowOutbound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = crate::settings::limits::parse_net(s) {
            return Ok(Self::Net(net));
        }
        if crate::spec::manifest::is_host_name(s) {
            Ok(Self::Host(s.to_ascii_lowercase()))
        } else {
            Err(format!(
                "`{s}` is neither a network (10.0.0.0/8, 127.0.0.1), nor a host name (api.internal)"
            ))
        }
    }
}

/// The operator's outbound settings, for every Micro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Destinations allowed beyond the public internet.
    pub allow: Vec<AllowOutbound>,
    /// Time to resolve, connect and (for HTTPS) shake hands.
    pub connect_timeout: Duration,
    /// Time from the request to the response head.
    pub first_byte_timeout: Duration,
    /// Outbound requests one execution may have open at once.
    pub max_concurrent: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            connect_timeout: DEFAULT_OUTBOUND_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_OUTBOUND_FIRST_BYTE_TIMEOUT,
            max_concurrent: DEFAULT_MAX_OUTBOUND,
        }
    }
}

/// The rules of one Micro: the operator's, narrowed by the Micro's own list.
#[derive(Debug)]
pub(crate) struct OutboundPolicy {
    config: OutboundConfig,
    /// `None`: any public destination; `Some`: only these.
    hosts: Option<Vec<OutboundHost>>,
    /// `None` only if the TLS library refuses its own defaults: HTTPS then fails per request.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Requests denied, for the metrics.
    denials: prometheus_client::metrics::counter::Counter,
    /// Hosts answered on the machine (Deta's Base and Drive hosts, from the app's own data).
    local: Option<Arc<dyn LocalHosts>>,
}

/// Hosts whose requests are answered on the machine instead of over the network, whatever the
/// rules say: the app hands the policy one that answers Deta's Base and Drive hosts from its
/// own data.
pub(crate) trait LocalHosts: Send + Sync + std::fmt::Debug + 'static {
    /// Whether requests to `host` (lowercase, without port) are answered here.
    fn answers(&self, host: &str) -> bool;

    /// The answer to a request to `host`, one of those it [`answers`](Self::answers).
    fn answer(
        &self,
        host: &str,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;
}

impl OutboundPolicy {
    /// The rules of a Micro: the operator's `config`, narrowed by its own `hosts`.
    pub(crate) fn new(config: &OutboundConfig, hosts: Option<Vec<OutboundHost>>) -> Self {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()
            .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()));
        Self {
            config: config.clone(),
            hosts,
            tls,
            denials: prometheus_client::metrics::counter::Counter::default(),
            local: None,
        }
    }

    /// Answers requests to `local`'s hosts on the machine from now on.
    pub(crate) fn answer_locally(mut self, local: Arc<dyn LocalHosts>) -> Self {
        self.local = Some(local);
        self
    }

    /// Counts every denied request in `counter` from now on.
    pub(crate) fn count_denials_in(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.denials = counter;
        self
    }
}

/// The outbound side of one execution: its policy and its share of concurrent requests.
struct OutboundHooks {
    policy: Arc<OutboundPolicy>,
    open: Arc<Semaphore>,
}

impl OutboundHooks {
    /// Hooks for a new execution.
    fn new(policy: Arc<OutboundPolicy>) -> Self {
        let open = Arc::new(Semaphore::new(policy.config.max_concurrent));
        Self { policy, open }
    }
}

/// A Micro's rules, plugged into its sandbox: each execution gets hooks of its own.
impl OutgoingHttp for Arc<OutboundPolicy> {
    fn hooks(&self) -> Box<dyn WasiHttpHooks + Send> {
        Box::new(OutboundHooks::new(Arc::clone(self)))
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        let policy = Arc::clone(&self.policy);
        let open = Arc::clone(&self.open);
        // wasi-http runs the request on a task of its own: keep the request's span for the log.
        let span = tracing::Span::current();
        Box::new(tracing::Instrument::instrument(
            async move {
                // Deta's Base and Drive hosts are answered here, from the app's own data.
                if let Some(local) = &policy.local
                    && let Ok(target) = target(request.uri())
                    && local.answers(&target.host)
                {
                    let response = local.answer(&target.host, request).await;
                    let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                        Box::new(async { Ok(()) });
                    return Ok((response, done));
                }
                let Ok(permit) = open.try_acquire_owned() else {
                    policy.denials.inc();
                    tracing::warn!(
                        error.type = "outbound_denied",
                        rule = "concurrency",
                        "outbound request refused: {} already open in this execution",
                        policy.config.max_concurrent
                    );
                    return Err(Error::ConnectionLimitReached);
                };
                // A guest may ask for shorter timeouts than the operator's, never longer ones.
                let shorter = |operator: Duration, guest: Option<Duration>| {
                    guest.map_or(operator, |guest| guest.min(operator))
                };
                let timeouts = Timeouts {
                    connect: shorter(
                        policy.config.connect_timeout,
                        options.and_then(|o| o.connect_timeout),
                    ),
                    first_byte: shorter(
                        policy.config.first_byte_timeout,
                        options.and_then(|o| o.first_byte_timeout),
                    ),
                };
                let (response, io) = send(&policy, request, timeouts).await?;
                let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
                    let ended = io.await;
                    drop(permit);
                    ended
                });
                Ok((response, io))
            },
            span,
        ))
    }
}

/// Where a request goes, from its URI.
struct Target {
    https: bool,
    host: String,
    port: u16,
}

fn target(uri: &http::Uri) -> Result<Target, Error> {
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(Error::HttpRequestUriInvalid),
    };
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target { https, host, port })
}

/// Refuses a request, saying in the log which rule did.
fn denied(policy: &OutboundPolicy, target: &Target, ip: Option<IpAddr>, rule: &str) -> Error {
    policy.denials.inc();
    tracing::warn!(
        error.type = "outbound_denied",
        host = %target.host,
        port = target.port,
        ip = %ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
        rule,
        "outbound request denied: {rule}"
    );
    Error::DestinationIpProhibited
}

/// The addresses a request may be dialled at, in order, or why none may.
async fn addresses(
    policy: &OutboundPolicy,
    target: &Target,
    lookup_timeout: Duration,
) -> Result<Vec<SocketAddr>, Error> {
    if let Some(hosts) = &policy.hosts
        && !hosts
            .iter()
            .any(|h| h.matches(target.https, &target.host, target.port))
    {
        return Err(denied(
            policy,
            target,
            None,
            "not in the Micro's allowed_outbound_hosts",
        ));
    }
    let allow = &policy.config.allow;
    let host_allowed = allow
        .iter()
        .any(|rule| matches!(rule, AllowOutbound::Host(h) if *h == target.host));
    let resolved: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
            match tokio::time::timeout(lookup_timeout, lookup).await {
                Err(_) => return Err(Error::DnsTimeout),
                Ok(Err(_)) => return Err(Error::DestinationNotFound),
                Ok(Ok(addresses)) => addresses.collect(),
            }
        }
    };
    let mut allowed = Vec::new();
    let mut refusal = None;
    for address in resolved {
        let ip = canonical(address.ip());
        let widened = host_allowed
            || allow
                .iter()
                .any(|rule| matches!(rule, AllowOutbound::Net(net) if net.contains(&ip)));
        match forbidden(ip) {
            Some(rule) if !widened => refusal = refusal.or(Some((ip, rule))),
            _ => allowed.push(SocketAddr::new(ip, address.port())),
        }
    }
    match (allowed.is_empty(), refusal) {
        (false, _) => Ok(allowed),
        (true, Some((ip, rule))) => Err(denied(policy, target, Some(ip), rule)),
        (true, None) => Err(Error::DestinationNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_rules_parse() {
        assert_eq!(
            "127.0.0.1/32".parse::<AllowOutbound>(),
            Ok(AllowOutbound::Net("127.0.0.1/32".parse().unwrap()))
        );
        assert_eq!(
            "10.0.0.7".parse::<AllowOutbound>(),
            Ok(AllowOutbound::Net("10.0.0.7/32".parse().unwrap()))
        );
        assert_eq!(
            "API.internal".parse::<AllowOutbound>(),
            Ok(AllowOutbound::Host("api.internal".into()))
        );
        assert!("http://x".parse::<AllowOutbound>().is_err());
        assert!("".parse::<AllowOutbound>().is_err());
    }

    #[tokio::test]
    async fn the_operator_widens_by_network() {
        let config = OutboundConfig {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..OutboundConfig::default()
        };
        let policy = OutboundPolicy::new(&config, None);
        let target = target(&"http://127.0.0.1:8080/".parse().unwrap()).unwrap();
        let found = addresses(&policy, &target, Duration::from_secs(1)).await;
        assert!(
            matches!(found.as_deref(), Ok([a]) if a.port() == 8080),
            "{:?}",
            found.err()
        );
    }
}
