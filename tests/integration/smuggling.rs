//! HTTP/1.1 framing where servers and proxies could disagree (request smuggling), sent as raw
//! bytes: each ambiguity is refused as RFC 9112 says, or read one way only and the connection
//! closed, and never answered as two requests.

use std::time::Duration;

use micros_guests as guests;

use crate::support::{Server, micro, raw, serve};

async fn echo() -> Server {
    serve(&[micro("web", guests::ECHO).primary()]).await
}

/// The status lines in a raw answer.
fn statuses(answer: &str) -> Vec<&str> {
    answer
        .split("\r\n")
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .collect()
}

async fn send(server: &Server, bytes: &[u8]) -> String {
    raw(server.addr, bytes, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_1_request_needs_exactly_one_host() {
    let server = echo().await;
    let none = send(&server, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains("needs a Host header"), "{none}");
    let two = send(&server, b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert!(two.contains("more than one Host header"), "{two}");
    // HTTP/1.0 has no Host requirement; one Host is served.
    let old = send(&server, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 200"), "{old}");
    let one = send(
        &server,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_chunked_transfer_coding_is_accepted() {
    let server = echo().await;
    let gzip = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(gzip.starts_with("HTTP/1.1 501"), "{gzip}");
    assert!(
        gzip.to_ascii_lowercase().contains("connection: close"),
        "{gzip}"
    );
    let split = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(split.starts_with("HTTP/1.1 501"), "{split}");
    let chunked = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
    // The echo comes back chunked, as it was streamed.
    assert!(
        chunked.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        "{chunked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_read_by_chunks_and_closed() {
    let server = echo().await;
    // CL.TE: a front end that trusts Content-Length (6) would pass `0\r\n\r\nG` as the body and
    // the rest as a second request. Here the chunks rule, the connection closes after the answer,
    // and nothing that follows is ever read as a request.
    let cl_te = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&cl_te), ["HTTP/1.1 200 OK"], "{cl_te}");
    assert!(
        cl_te.to_ascii_lowercase().contains("connection: close"),
        "{cl_te}"
    );
    assert!(!cl_te.contains("/smuggled"), "{cl_te}");
    // TE.CL: a front end that trusts Transfer-Encoding and a back end that trusted Content-Length
    // (3) would disagree on where `SMUGGLED` belongs. Here it is the body, and the only request.
    let te_cl = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&te_cl), ["HTTP/1.1 200 OK"], "{te_cl}");
    assert!(te_cl.ends_with("\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"), "{te_cl}");
    assert!(
        te_cl.to_ascii_lowercase().contains("connection: close"),
        "{te_cl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn obfuscated_transfer_encodings_are_refused() {
    let server = echo().await;
    // TE.TE: one server picks the first header, another the last, a third ignores a misspelled
    // one. Each of these is refused, whole, before any body is read.
    for (shape, head) in [
        (
            "chunked, then another coding",
            "transfer-encoding: chunked\r\ntransfer-encoding: x\r\n",
        ),
        ("a misspelled coding", "transfer-encoding: xchunked\r\n"),
        (
            "chunked not last",
            "transfer-encoding: chunked, identity\r\n",
        ),
        (
            "a space before the colon",
            "transfer-encoding : chunked\r\n",
        ),
        (
            "a line folded into the header",
            "transfer-encoding:\r\n chunked\r\n",
        ),
    ] {
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\n{head}\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
        );
        let answer = send(&server, request.as_bytes()).await;
        assert_eq!(statuses(&answer).len(), 1, "{shape}: {answer}");
        assert!(answer.starts_with("HTTP/1.1 400"), "{shape}: {answer}");
    }
    // Transfer-Encoding in HTTP/1.0, which has none: the framing is faulty.
    let old = send(
        &server,
        b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(old.starts_with("HTTP/1.1 400"), "{old}");
    // Two Content-Lengths that disagree.
    let lengths = send(
        &server,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 30\r\n\r\nabc",
    )
    .await;
    assert!(lengths.starts_with("HTTP/1.1 400"), "{lengths}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_line_ends_and_chunk_extension_bombs() {
    let server = echo().await;
    // A bare LF ends a line (RFC 9112 §2.2 lets a recipient accept it): the head is read as one
    // request, the same way whichever line end was used.
    let lf = send(&server, b"GET /lf HTTP/1.1\nhost: x\nconnection: close\n\n").await;
    assert_eq!(statuses(&lf), ["HTTP/1.1 200 OK"], "{lf}");
    assert!(lf.contains("x-echo-path: /lf"), "{lf}");
    // A bare CR is not a line end anywhere: refused.
    let cr = send(&server, b"GET / HTTP/1.1\rhost: x\r\n\r\n").await;
    assert!(cr.starts_with("HTTP/1.1 400"), "{cr}");
    // A chunk extension of 100 KB: hyper stops reading extensions at 16 KiB, the body fails, and
    // the guest never sees it whole: 400, in bounded time.
    let mut bomb = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1;".to_vec();
    bomb.extend(std::iter::repeat_n(b'a', 100_000));
    bomb.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    let started = std::time::Instant::now();
    let answer = send(&server, &bomb).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
