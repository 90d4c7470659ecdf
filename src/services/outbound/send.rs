//! Sending one checked request: connect to an address that passed the rules, TLS against the
//! name the guest asked for, HTTP/1.1, with the connect and first-byte timeouts.

use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, WasiBody};

use super::{OutboundPolicy, addresses, target};

/// The timeouts of one outbound request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Resolve, connect and shake hands.
    pub(super) connect: Duration,
    /// From the request to the response head.
    pub(super) first_byte: Duration,
}

/// A connection to an upstream, plain or TLS.
trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

pub(super) type Sent = (
    http::Response<WasiBody>,
    std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
);

/// Checks, connects to a checked address, and sends the request; returns the response head and
/// the future that drives the rest of the connection.
pub(super) async fn send(
    policy: &OutboundPolicy,
    mut request: http::Request<WasiBody>,
    timeouts: Timeouts,
) -> Result<Sent, Error> {
    let target = target(request.uri())?;
    let addresses = addresses(policy, &target, timeouts.connect).await?;
    let connect = async {
        let mut last = Error::ConnectionRefused;
        for address in &addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Error::Connect(error),
            }
        }
        Err(last)
    };
    let handshake = async {
        let stream = connect.await?;
        let stream: Box<dyn Connection> = if target.https {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?;
            let tls = policy.tls.clone().ok_or(Error::TlsProtocolError)?;
            let connector = tokio_rustls::TlsConnector::from(tls);
            Box::new(connector.connect(name, stream).await.map_err(Error::Tls)?)
        } else {
            Box::new(stream)
        };
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream))
            .await
            .map_err(Error::from)
    };
    let (mut sender, connection) = tokio::time::timeout(timeouts.connect, handshake)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    // On the wire the request target is the path; the authority is in the Host header.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;

    let mut connection = Some(Box::pin(connection));
    let response = tokio::time::timeout(timeouts.first_byte, sender.send_request(request));
    tokio::pin!(response);
    let response = loop {
        match connection.as_mut() {
            Some(driver) => tokio::select! {
                response = &mut response => break response,
                ended = driver => {
                    connection = None;
                    ended.map_err(Error::from)?;
                }
            },
            None => break (&mut response).await,
        }
    };
    let response = response
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let rest: std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> =
        Box::pin(async move {
            match connection {
                Some(driver) => driver.await.map_err(Error::from),
                None => Ok(()),
            }
        });
    Ok((response, rest))
}
