//! Outbound HTTP: `GET /?url=http://host:port/path` fetches the URL once and answers with its
//! status and body, or with the `wasi:http` error code the guest got. `&n=K` sends K requests at
//! once and answers with each outcome on its own line.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    FutureIncomingResponse, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

struct Fetch;

/// Sends a GET for `url` without waiting for the answer.
fn start(url: &str) -> Result<FutureIncomingResponse, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return Err(format!("not an http(s) URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(wasip2::http::types::Fields::new());
    let set = request
        .set_scheme(Some(&scheme))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)));
    set.map_err(|()| format!("invalid URL: {url}"))?;
    outgoing_handler::handle(request, None).map_err(|e| format!("error: {e:?}"))
}

/// Waits for a response and reads its body: `status N: body`, or the error.
fn finish(future: FutureIncomingResponse) -> String {
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return format!("error: {code:?}").replace("ErrorCode::", ""),
        other => return format!("error: no response ({})", other.is_some()),
    };
    let status = response.status();
    let Ok(body) = response.consume() else {
        return format!("status {status}: (no body)");
    };
    let Ok(stream) = body.stream() else {
        return format!("status {status}: (no body stream)");
    };
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return format!("status {status}: body failed: {}", e.to_debug_string());
            }
        }
    }
    format!("status {status}: {}", String::from_utf8_lossy(&bytes))
}

impl wasip2::exports::http::incoming_handler::Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let url = kit::query(&request, "url").unwrap_or_default();
        let n = kit::query_u64(&request, "n", 1);
        // Start them all before waiting for any, so that they are open at once.
        let started: Vec<_> = (0..n).map(|_| start(&url)).collect();
        let outcomes: Vec<String> = started
            .into_iter()
            .map(|future| future.map_or_else(|e| e, finish))
            .collect();
        kit::text(out, &outcomes.join("\n"));
    }
}

wasip2::http::proxy::export!(Fetch);
