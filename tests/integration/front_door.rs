//! The front door and the in-flight cap: what a client must do before a Micro runs, and how many
//! executions of one Micro may run at once. Each limit as a pair, obeyed and violated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micros::{FrontDoor, Limits};
use micros_guests as guests;

use crate::support::{Server, micro, raw, serve_config};

async fn with_front_door(front_door: FrontDoor) -> Server {
    serve_config(&[micro("web", guests::ECHO).primary()], |config| {
        config.front_door = front_door
    })
    .await
}

fn request_with_headers(count: usize, value_len: usize) -> Vec<u8> {
    let mut request = String::from("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..count {
        request.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(value_len)));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_obeyed_and_violated() {
    let limits = Limits {
        max_in_flight: 2,
        ..Limits::default()
    };
    let server = Arc::new(
        serve_config(&[micro("web", guests::SLEEPER).primary()], |config| {
            config.limits = limits
        })
        .await,
    );
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { server.get("/?ms=1500").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = server.get("/?ms=1").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(
        refused.text(),
        "micro `web`: 2 executions already in flight, the limit; retry shortly\n"
    );
    for reply in slow {
        assert_eq!(reply.await.unwrap().text(), "slept 1500 ms\n");
    }
    // Once they are done, there is room again.
    assert_eq!(server.get("/?ms=1").await.text(), "slept 1 ms\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_size_obeyed_and_violated() {
    let server = with_front_door(FrontDoor {
        max_header_bytes: 8 * 1024,
        ..FrontDoor::default()
    })
    .await;
    let ok = raw(
        server.addr,
        &request_with_headers(1, 7 * 1024),
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    let too_big = raw(
        server.addr,
        &request_with_headers(1, 9 * 1024),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        too_big.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{too_big}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_default_keeps_the_guest_from_trapping() {
    // A header past the guest's own 128 KiB field limit would trap it: the front door refuses it.
    let server = with_front_door(FrontDoor::default()).await;
    let too_big = raw(
        server.addr,
        &request_with_headers(1, 130 * 1024),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        too_big.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{too_big}"
    );
    let ok = raw(
        server.addr,
        &request_with_headers(1, 60 * 1024),
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_count_obeyed_and_violated() {
    let server = with_front_door(FrontDoor {
        max_headers: 20,
        ..FrontDoor::default()
    })
    .await;
    // The request line adds none; `host` and `connection` are two of the twenty.
    let ok = raw(
        server.addr,
        &request_with_headers(18, 4),
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    let too_many = raw(
        server.addr,
        &request_with_headers(19, 4),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        too_many.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{too_many}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off() {
    let server = with_front_door(FrontDoor {
        header_read_timeout: Duration::from_secs(1),
        ..FrontDoor::default()
    })
    .await;
    // A client that sends its headers in time is served.
    let ok = raw(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    // Slowloris: half a request, then nothing. The server closes the connection.
    let started = Instant::now();
    let cut = raw(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ",
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}: {cut}"
    );
    assert!(cut.is_empty() || cut.starts_with("HTTP/1.1 408"), "{cut}");
    // An idle keep-alive connection is closed too, once the next request is that late.
    let started = Instant::now();
    let idle = raw(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(idle.starts_with("HTTP/1.1 200 OK\r\n"), "{idle}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "idle connection closed after {took:?}"
    );
}

/// A request whose client leaves (before the head, or during the body) stops running: its slot
/// is free again at once instead of at the time limit.
#[tokio::test(flavor = "multi_thread")]
async fn abandoned_work_stops_when_the_client_goes_away() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let limits = Limits {
        max_in_flight: 1,
        execution_time: Duration::from_secs(3),
        ..Limits::default()
    };
    let server = Arc::new(
        serve_config(&[micro("web", guests::SPIN).primary()], |config| {
            config.limits = limits
        })
        .await,
    );

    // While its client waits, a spinning execution holds the only slot.
    let waiting = {
        let server = server.clone();
        tokio::spawn(async move { server.get("/").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/").await.status, 503);
    assert_eq!(waiting.await.unwrap().status, 504);

    for (request, read_head) in [
        (&b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"[..], false),
        (b"GET /?after_head HTTP/1.1\r\nhost: x\r\n\r\n", true),
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        if read_head {
            let mut head = [0u8; 64];
            let n = stream.read(&mut head).await.unwrap();
            assert!(
                head[..n].starts_with(b"HTTP/1.1 200 OK"),
                "{}",
                String::from_utf8_lossy(&head[..n])
            );
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        drop(stream);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The slot is free: the next request runs (and hits the time limit) instead of a 503.
        let started = Instant::now();
        let reply = server.get("/").await;
        assert_eq!(reply.status, 504, "read_head={read_head}: {reply:?}");
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "read_head={read_head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let server = with_front_door(FrontDoor {
        body_read_timeout: Duration::from_secs(1),
        ..FrontDoor::default()
    })
    .await;
    // A chunked body whose pieces come in time is served.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n") && response.contains("\r\nhello world\r\n"),
        "{response}"
    );
    // One that stops half-way gets 408 before the guest runs.
    let started = Instant::now();
    let cut = raw(
        server.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(cut.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{cut}");
    assert!(
        cut.ends_with("micro `web`: the request body stopped arriving (nothing for 1s)\n"),
        "{cut}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_their_turn() {
    use tokio::io::AsyncWriteExt as _;
    let server = with_front_door(FrontDoor {
        max_connections: 1,
        ..FrontDoor::default()
    })
    .await;
    // The first client holds the only connection (keep-alive, idle after its request).
    let mut first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second client is not served while it does...
    let second = tokio::spawn(raw(
        server.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "served past the connection cap");
    // ...and is, as soon as the first leaves.
    drop(first);
    let reply = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
}

/// Opens `clients` connections at once and sends a request on each; with `hold`, only once all
/// are open. Returns every response's status line.
async fn many_clients(server: &Server, clients: usize, hold: bool) -> Vec<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let all_open = Arc::new(tokio::sync::Barrier::new(if hold { clients } else { 1 }));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, all_open) = (server.addr, all_open.clone());
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                all_open.wait().await;
                stream
                    .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut response = Vec::new();
                stream.read_to_end(&mut response).await.unwrap();
                let response = String::from_utf8_lossy(&response).into_owned();
                response.lines().next().unwrap_or("").to_string()
            })
        })
        .collect();
    let mut statuses = Vec::with_capacity(clients);
    for task in tasks {
        let status = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("every client is answered")
            .unwrap();
        statuses.push(status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_concurrent_connections_obeyed() {
    // All 2,000 held open at once, under the default cap of 4,096, each answered.
    let server = serve_config(&[micro("web", guests::HELLO).primary()], |config| {
        config.limits.max_in_flight = 2000;
    })
    .await;
    let statuses = many_clients(&server, 2000, true).await;
    assert!(
        statuses.iter().all(|s| s == "HTTP/1.1 200 OK"),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_connections_past_the_cap_wait_and_are_served() {
    // Twice the cap: the second thousand wait (in the listen queue, or retrying their connect
    // once it is full) and are answered in turn. They cannot all be open at once by design.
    let server = serve_config(&[micro("web", guests::HELLO).primary()], |config| {
        config.front_door.max_connections = 1000;
        config.limits.max_in_flight = 2000;
    })
    .await;
    let statuses = many_clients(&server, 2000, false).await;
    assert!(
        statuses.iter().all(|s| s == "HTTP/1.1 200 OK"),
        "{statuses:?}"
    );
    assert_eq!(server.get("/").await.text(), "hello from micros\n");
}
