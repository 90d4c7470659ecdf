//! Every row of the limits table as a pair, obeyed and violated, and the server healthy after.

use std::time::{Duration, Instant};

use bytes::Bytes;
use micros::Limits;
use micros_guests as guests;

use crate::support::{Server, micro, serve, serve_with, short_limits};

/// A benign Micro beside the one under test: it must keep answering.
pub(crate) fn with_hello(spec: crate::support::MicroSpec) -> [crate::support::MicroSpec; 2] {
    [spec.primary(), micro("hello", guests::HELLO).path("/hello")]
}

/// The Micro under test as primary beside a benign one, under `limits`.
pub(crate) async fn limited(guest: &'static str, limits: Limits) -> Server {
    serve_with(&with_hello(micro("web", guest)), limits, vec![]).await
}

/// Asserts `path` gets a 504 for a 1 s limit, within a few ticks of it, and the server is fine.
async fn assert_stopped_at_one_second(server: &Server, path: &str) {
    let started = Instant::now();
    let reply = server.get(path).await;
    assert_error(
        &reply,
        504,
        "micro `web`: execution time limit of 1s exceeded\n",
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_healthy(server).await;
}

/// A 64 MiB memory limit: small enough to break quickly, large enough for a guest to start.
fn memory_64_mib() -> Limits {
    Limits {
        memory: 64 << 20,
        ..Limits::default()
    }
}

pub(crate) async fn assert_healthy(server: &Server) {
    let reply = server.get("/hello/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from micros\n");
}

pub(crate) fn assert_error(reply: &crate::support::Reply, status: u16, text: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.text(), text);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-request-id").map(str::len), Some(16));
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_obeyed() {
    let server = limited(guests::MEMHOG, memory_64_mib()).await;
    let reply = server.get("/?mib=40").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "held 40 MiB\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_violated_by_one_big_grow() {
    let server = limited(guests::MEMHOG, memory_64_mib()).await;
    let reply = server.get("/?mib=100").await;
    assert_error(
        &reply,
        500,
        "micro `web`: memory limit of 67108864 bytes exceeded\n",
    );
    assert_healthy(&server).await;
    // The next execution of the same Micro starts from a fresh store.
    assert_eq!(server.get("/?mib=8").await.text(), "held 8 MiB\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_violated_by_many_small_grows() {
    let server = limited(guests::MEMHOG, memory_64_mib()).await;
    let reply = server.get("/?mib=200&step=1").await;
    assert_error(
        &reply,
        500,
        "micro `web`: memory limit of 67108864 bytes exceeded\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_default_is_512_mib() {
    let server = serve(&with_hello(micro("web", guests::MEMHOG))).await;
    assert_eq!(server.get("/?mib=400").await.text(), "held 400 MiB\n");
    let reply = server.get("/?mib=600").await;
    assert_error(
        &reply,
        500,
        "micro `web`: memory limit of 536870912 bytes exceeded\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_obeyed() {
    let server = limited(guests::SLEEPER, short_limits(Duration::from_secs(2))).await;
    assert_eq!(server.get("/?ms=300").await.text(), "slept 300 ms\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn time_violated_by_a_cpu_loop() {
    let server = limited(guests::SPIN, short_limits(Duration::from_secs(1))).await;
    assert_stopped_at_one_second(&server, "/").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_violated_while_blocked_in_a_host_call() {
    let server = limited(guests::SLEEPER, short_limits(Duration::from_secs(1))).await;
    assert_stopped_at_one_second(&server, "/?ms=60000").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_violated_after_the_head_cuts_the_body() {
    let server = serve_with(
        &[
            micro("web", guests::SLEEPER).primary(),
            micro("spin", guests::SPIN),
            micro("hello", guests::HELLO).path("/hello"),
        ],
        short_limits(Duration::from_secs(1)),
        vec![],
    )
    .await;
    for path in ["/?ms=60000&after_head", "/spin/?after_head"] {
        let reply = server.get_cut(path).await;
        assert!(
            reply.is_err(),
            "{path}: the response must be cut, not end cleanly: {reply:?}"
        );
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_default_is_20_seconds() {
    let server = serve(&with_hello(micro("web", guests::SPIN))).await;
    let started = Instant::now();
    let reply = server.get("/").await;
    let took = started.elapsed();
    assert_error(
        &reply,
        504,
        "micro `web`: execution time limit of 20s exceeded\n",
    );
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(23),
        "took {took:?}"
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_body_obeyed() {
    let limits = Limits {
        request_body: 1000,
        ..Limits::default()
    };
    let server = limited(guests::ECHO, limits).await;
    assert_eq!(
        server.post("/", vec![b'a'; 1000]).await.body.unwrap().len(),
        1000
    );
    let chunks = vec![Bytes::from(vec![b'a'; 600]), Bytes::from(vec![b'b'; 400])];
    assert_eq!(
        server.post_chunked("/", chunks).await.body.unwrap().len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_body_violated_with_a_declared_length() {
    let limits = Limits {
        request_body: 1000,
        ..Limits::default()
    };
    let server = limited(guests::ECHO, limits).await;
    let reply = server.post("/", vec![b'a'; 1001]).await;
    assert_error(
        &reply,
        413,
        "micro `web`: request body exceeds the limit of 1000 bytes\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_body_violated_while_streamed() {
    let limits = Limits {
        request_body: 1000,
        ..Limits::default()
    };
    let server = limited(guests::ECHO, limits).await;
    let chunks = vec![Bytes::from(vec![b'a'; 600]), Bytes::from(vec![b'b'; 401])];
    let reply = server.post_chunked("/", chunks).await;
    assert_error(
        &reply,
        413,
        "micro `web`: request body exceeds the limit of 1000 bytes\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_body_default_is_5_5_mib() {
    let server = serve(&with_hello(micro("web", guests::ECHO))).await;
    assert_eq!(
        server
            .post("/", vec![b'a'; 5_767_168])
            .await
            .body
            .unwrap()
            .len(),
        5_767_168
    );
    // The 413 comes before the body is sent: announce one byte too many and send nothing.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5767169\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, head)
        .await
        .unwrap();
    let mut response = Vec::new();
    let expected = "micro `web`: request body exceeds the limit of 5767168 bytes\n";
    while !String::from_utf8_lossy(&response).ends_with(expected) {
        let mut buffer = [0; 1024];
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        .expect("the 413 arrives without the body")
        .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buffer[..n]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 413 Payload Too Large\r\n"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn response_body_obeyed() {
    let limits = Limits {
        response_body: 100_000,
        ..Limits::default()
    };
    let server = limited(guests::BIG, limits).await;
    let reply = server.get("/?bytes=100000&declare").await;
    assert_eq!(reply.header("content-length"), Some("100000"));
    assert_eq!(reply.body.unwrap().len(), 100_000);
    assert_eq!(
        server.get("/?bytes=100000").await.body.unwrap().len(),
        100_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn response_body_violated_with_a_declared_length() {
    let limits = Limits {
        response_body: 100_000,
        ..Limits::default()
    };
    let server = limited(guests::BIG, limits).await;
    let reply = server.get("/?bytes=100001&declare").await;
    assert_error(
        &reply,
        502,
        "micro `web`: response body exceeds the limit of 100000 bytes\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn response_body_violated_while_streamed() {
    let limits = Limits {
        response_body: 100_000,
        ..Limits::default()
    };
    let server = limited(guests::BIG, limits).await;
    let reply = server.get_cut("/?bytes=300000").await;
    assert!(reply.is_err(), "the body must be cut: {reply:?}");
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn response_body_default_is_5_5_mib() {
    let server = serve(&with_hello(micro("web", guests::BIG))).await;
    assert_eq!(
        server
            .get("/?bytes=5767168&declare")
            .await
            .body
            .unwrap()
            .len(),
        5_767_168
    );
    let reply = server.get("/?bytes=5767169&declare").await;
    assert_error(
        &reply,
        502,
        "micro `web`: response body exceeds the limit of 5767168 bytes\n",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_requests_get_501() {
    let server = serve(&with_hello(micro("web", guests::ECHO))).await;
    let request = http::Request::get("/ws")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let reply = crate::support::send(server.addr, request).await;
    assert_error(
        &reply,
        501,
        "micro `web`: websocket and other protocol upgrades are not supported\n",
    );
    assert_eq!(server.get("/ws").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_panic_gets_500() {
    let server = serve(&with_hello(micro("web", guests::PANIC))).await;
    assert_error(
        &server.get("/").await,
        500,
        "micro `web`: the Micro crashed (trap or panic)\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_without_a_response_gets_500() {
    let server = serve(&with_hello(micro("web", guests::PANIC))).await;
    assert_error(
        &server.get("/silent").await,
        500,
        "micro `web`: the Micro returned without a response\n",
    );
    assert_error(
        &server.get("/error").await,
        500,
        "micro `web`: the Micro answered with an error instead of a response\n",
    );
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_trap_after_the_head_cuts_the_body() {
    let server = serve(&with_hello(micro("web", guests::BIG))).await;
    let reply = server.get_cut("/?bytes=200000&trap_after=100000").await;
    assert!(reply.is_err(), "the body must be cut: {reply:?}");
    // Even a guest that wrote every byte and then trapped must not look like a success.
    let reply = server.get_cut("/?bytes=1000&trap_after=5000").await;
    assert!(reply.is_err(), "the body must be cut: {reply:?}");
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_in_flight_requests_finish() {
    let server = serve(&[micro("web", guests::SLEEPER).primary()]).await;
    let addr = server.addr;
    let in_flight = tokio::spawn(async move {
        crate::support::send(
            addr,
            http::Request::get("/?ms=1000")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.shutdown().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "slept 1000 ms\n");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn handles_obeyed() {
    let limits = Limits {
        max_handles: 1000,
        ..Limits::default()
    };
    let server = limited(guests::HANDLES, limits).await;
    assert_eq!(
        server.get("/?count=900").await.text(),
        "holding 900 handles\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn handles_violated() {
    let limits = Limits {
        max_handles: 1000,
        ..Limits::default()
    };
    let server = limited(guests::HANDLES, limits).await;
    let reply = server.get("/").await;
    assert_error(&reply, 500, "micro `web`: handle limit of 1000 exceeded\n");
    assert_healthy(&server).await;
    // The default holds too, without the host feeling it.
    let server = limited(guests::HANDLES, Limits::default()).await;
    let reply = server.get("/").await;
    assert_error(&reply, 500, "micro `web`: handle limit of 16384 exceeded\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_obeyed_and_violated() {
    let server = limited(guests::RECURSION, Limits::default()).await;
    let reply = server.get("/?depth=1000").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().starts_with("reached depth 1000 ("),
        "{}",
        reply.text()
    );
    // Unbounded recursion ends in a trap (stack overflow, or out of bounds once the shadow stack
    // in linear memory runs out): a 500, and the server is fine.
    assert_error(
        &server.get("/").await,
        500,
        "micro `web`: the Micro crashed (trap or panic)\n",
    );
    assert_healthy(&server).await;
}
