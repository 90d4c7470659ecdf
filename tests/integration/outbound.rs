//! Outbound HTTP from guests: the public internet only, unless the operator widens it; a Micro
//! may narrow it; checked on the address dialled; timeouts and a cap per execution.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use micros::{AllowOutbound, OutboundConfig};
use micros_guests as guests;

use crate::support::{Server, micro, serve_config};

/// A plain HTTP upstream on loopback: `/` answers `upstream ok`, `/slow` never answers. Counts
/// the requests it receives.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                            "upstream ok",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The fetch guest under the operator's `outbound` settings, with extra manifest lines.
async fn fetcher(outbound: OutboundConfig, manifest: &str) -> Server {
    serve_config(
        &[micro("web", guests::FETCH).primary().toml(manifest)],
        |config| config.outbound = outbound,
    )
    .await
}

fn loopback_allowed() -> OutboundConfig {
    OutboundConfig {
        allow: vec![AllowOutbound::Net("127.0.0.1/32".parse().unwrap())],
        ..OutboundConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_to_private_addresses_is_denied_by_default() {
    let (upstream, seen) = upstream().await;
    let server = fetcher(OutboundConfig::default(), "").await;
    for url in [
        format!("http://{upstream}/"),
        // A name that resolves to loopback is checked on the address it resolves to.
        format!("http://localhost:{}/", upstream.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", upstream.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://[fd00:ec2::254]/".to_string(),
    ] {
        let started = Instant::now();
        let reply = server.get(&format!("/?url={url}")).await;
        assert_eq!(reply.text(), "error: DestinationIpProhibited", "{url}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url}: no connection attempted"
        );
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the upstream was never reached"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_open_a_network() {
    let (upstream, seen) = upstream().await;
    let server = fetcher(loopback_allowed(), "").await;
    let reply = server.get(&format!("/?url=http://{upstream}/")).await;
    assert_eq!(reply.text(), "status 200: upstream ok");
    // By name too: `localhost` resolves to an allowed address.
    let reply = server
        .get(&format!("/?url=http://localhost:{}/", upstream.port()))
        .await;
    assert_eq!(reply.text(), "status 200: upstream ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    // Opening loopback opens nothing else.
    assert_eq!(
        server.get("/?url=http://10.0.0.1/").await.text(),
        "error: DestinationIpProhibited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_micro_can_narrow_its_reach() {
    let (allowed, _) = upstream().await;
    let (other, other_seen) = upstream().await;
    let server = fetcher(
        loopback_allowed(),
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
            allowed.port()
        ),
    )
    .await;
    assert_eq!(
        server.get(&format!("/?url=http://{allowed}/")).await.text(),
        "status 200: upstream ok"
    );
    assert_eq!(
        server.get(&format!("/?url=http://{other}/")).await.text(),
        "error: DestinationIpProhibited"
    );
    // Same host and port, other scheme: not the same destination.
    assert_eq!(
        server
            .get(&format!("/?url=https://{allowed}/"))
            .await
            .text(),
        "error: DestinationIpProhibited"
    );
    assert_eq!(other_seen.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrowing_cannot_widen() {
    let (upstream, seen) = upstream().await;
    let server = fetcher(
        OutboundConfig::default(),
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
            upstream.port()
        ),
    )
    .await;
    assert_eq!(
        server
            .get(&format!("/?url=http://{upstream}/"))
            .await
            .text(),
        "error: DestinationIpProhibited"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_timeouts_and_the_cap_per_execution() {
    let (upstream, _) = upstream().await;
    let outbound = OutboundConfig {
        first_byte_timeout: Duration::from_millis(500),
        max_concurrent: 2,
        ..loopback_allowed()
    };
    let server = fetcher(outbound, "").await;
    let started = Instant::now();
    let reply = server.get(&format!("/?url=http://{upstream}/slow")).await;
    assert_eq!(reply.text(), "error: ConnectionReadTimeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Five at once, two allowed: two time out waiting, three are refused at once.
    let reply = server
        .get(&format!("/?url=http://{upstream}/slow&n=5"))
        .await;
    let mut outcomes: Vec<&str> = reply.text().leak().lines().collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        [
            "error: ConnectionLimitReached",
            "error: ConnectionLimitReached",
            "error: ConnectionLimitReached",
            "error: ConnectionReadTimeout",
            "error: ConnectionReadTimeout",
        ]
    );
    // A destination that accepts the connection and then says nothing (no TLS handshake) is
    // given up at the connect timeout, which covers the handshakes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let outbound = OutboundConfig {
        connect_timeout: Duration::from_millis(300),
        ..loopback_allowed()
    };
    let server = fetcher(outbound, "").await;
    let started = Instant::now();
    let reply = server.get(&format!("/?url=https://{silent_addr}/")).await;
    assert_eq!(reply.text(), "error: ConnectionTimeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}
