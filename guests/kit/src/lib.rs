//! Small helpers the test guests share: read a request, answer it, look up a query parameter.

use std::io::Read as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

/// The request line of an incoming request, as the guest sees it.
pub fn path_with_query(request: &IncomingRequest) -> String {
    request.path_with_query().unwrap_or_default()
}

/// The value of query parameter `name`, if present (no percent-decoding: tests pass plain values).
pub fn query(request: &IncomingRequest, name: &str) -> Option<String> {
    let pwq = path_with_query(request);
    let (_, query) = pwq.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_string())
    })
}

/// The numeric query parameter `name`, or `default`.
pub fn query_u64(request: &IncomingRequest, name: &str, default: u64) -> u64 {
    query(request, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads the whole request body.
pub fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("request body already consumed");
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().expect("request body stream");
        stream.read_to_end(&mut bytes).expect("read request body");
    }
    drop(body);
    bytes
}

/// Sends a whole response: status, headers and body, then finishes it.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let (response, out_body) = start(status, headers);
    ResponseOutparam::set(out, Ok(response));
    {
        let stream = out_body.write().expect("response body stream");
        write_all(&stream, body);
    }
    OutgoingBody::finish(out_body, None).expect("finish response body");
}

/// Sends a plain-text 200 response.
pub fn text(out: ResponseOutparam, body: &str) {
    respond(
        out,
        200,
        &[("content-type", b"text/plain; charset=utf-8")],
        body.as_bytes(),
    );
}

/// Builds a response and its body without sending it.
pub fn start(status: u16, headers: &[(&str, &[u8])]) -> (OutgoingResponse, OutgoingBody) {
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value).expect("valid response header");
    }
    let response = OutgoingResponse::new(fields);
    response.set_status_code(status).expect("valid status code");
    let body = response.body().expect("response body");
    (response, body)
}

/// Writes `bytes` to a body's stream (an outgoing body hands out its stream once) and flushes.
pub fn write_all(stream: &OutputStream, bytes: &[u8]) {
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("write response body");
    }
}
