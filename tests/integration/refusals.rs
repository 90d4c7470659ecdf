//! Every client sees every refusal: an early answer (413, 401, 431...) reaches a client that
//! writes its whole request before it reads, because the server closes with a lingering close;
//! and lingering is bounded, in time and in bytes, so that nobody can hold a connection with it.

use std::time::{Duration, Instant};

use micros::{AuthMode, FrontDoor};
use micros_guests as guests;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{MicroSpec, Server, micro, serve_config};

/// 6,000,000 bytes: past the request body limit of 5.5 MiB (5,767,168 bytes), as in the report
/// that found the broken pipe.
const TOO_LARGE: usize = 6_000_000;

/// A public page and a private API, both echoing.
fn app() -> Vec<MicroSpec> {
    vec![
        micro("web", guests::ECHO).primary().toml("public = true"),
        micro("api", guests::ECHO).path("/api"),
    ]
}

async fn serve(configure: impl FnOnce(&mut micros::Config)) -> Server {
    serve_config(&app(), |config| {
        config.auth = AuthMode::Required;
        configure(config);
    })
    .await
}

/// Sends `head` (which ends with the blank line) and then `body` bytes, chunked if `chunked`,
/// all of it before reading a byte, as Python's `http.client` does; then reads the answer to the
/// end. `Err` says what the client met instead of an answer (a reset while writing: the answer
/// was lost).
async fn write_then_read(
    server: &Server,
    head: &str,
    body: usize,
    chunked: bool,
) -> Result<String, String> {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        let piece = vec![b'x'; 64 * 1024];
        let mut left = body;
        while left > 0 {
            let n = left.min(piece.len());
            if chunked {
                stream.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                stream.write_all(&piece[..n]).await?;
                stream.write_all(b"\r\n").await?;
            } else {
                stream.write_all(&piece[..n]).await?;
            }
            left -= n;
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), sent)
        .await
        .map_err(|_| "the client could not send its request in 30 s".to_string())?
        .map_err(|e| format!("writing the request failed: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| "no end of the answer in 30 s".to_string())?
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Asserts that `answer` is one response with `status`, that says it closes the connection.
fn assert_refused(answer: Result<String, String>, status: &str) {
    let answer = answer.unwrap_or_else(|e| panic!("expected {status}, but {e}"));
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "expected {status}: {answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "an early answer closes the connection: {answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
}

fn post(path: &str, length: Option<usize>) -> String {
    match length {
        Some(length) => {
            format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {length}\r\n\r\n")
        }
        None => format!("POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_writes_first_reads_each_early_refusal() {
    let server = serve(|_| {}).await;
    // Declared too large: refused before a byte of the body is read.
    let declared = write_then_read(&server, &post("/", Some(TOO_LARGE)), TOO_LARGE, false).await;
    assert_refused(declared, "413");
    // Chunked: refused once the limit is passed, with the rest still on its way.
    let chunked = write_then_read(&server, &post("/", None), TOO_LARGE, true).await;
    assert_refused(chunked, "413");
    // A private route refuses a stranger before anything else, body and all.
    let private =
        write_then_read(&server, &post("/api/x", Some(TOO_LARGE)), TOO_LARGE, false).await;
    assert_refused(private, "401");
    // 100 KiB of headers: hyper answers 431 with most of them unread.
    let mut head = String::from("GET / HTTP/1.1\r\nhost: x\r\n");
    for i in 0..100 {
        head.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(1024)));
    }
    head.push_str("\r\n");
    let headers = write_then_read(&server, &head, 0, false).await;
    let headers = headers.unwrap_or_else(|e| panic!("expected 431, but {e}"));
    assert!(headers.starts_with("HTTP/1.1 431"), "{headers}");
    // The login form and the owner's data routes: the same.
    let login = post("/__space/login", Some(TOO_LARGE));
    assert_refused(
        write_then_read(&server, &login, TOO_LARGE, false).await,
        "413",
    );
    let base = post("/__space/v0/base/notes/items", Some(TOO_LARGE));
    assert_refused(
        write_then_read(&server, &base, TOO_LARGE, false).await,
        "401",
    );
    // A body within the limit is read and answered as always, and the connection stays open.
    let fine = write_then_read(
        &server,
        &post("/", Some(1000)).replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n"),
        1000,
        false,
    )
    .await;
    let fine = fine.unwrap();
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn data_routes_413_reach_a_client_that_writes_first() {
    // The owner's routes, open (auth off): Drive takes at most 10 MiB per request, Base 16 MiB.
    let server = serve_config(&app(), |_| {}).await;
    let drive = post("/__space/v0/drive/files/files?name=big", Some(12_000_000));
    assert_refused(
        write_then_read(&server, &drive, 12_000_000, false).await,
        "413",
    );
    let base = post("/__space/v0/base/notes/items", Some(17_000_000));
    assert_refused(
        write_then_read(&server, &base, 17_000_000, false).await,
        "413",
    );
    let chunked = post("/__space/v0/drive/files/files?name=big", None);
    assert_refused(
        write_then_read(&server, &chunked, 12_000_000, true).await,
        "413",
    );
}

/// Sends a too-large request, reads its 413, then goes on sending a little at a time; returns how
/// long after the 413 the server cut the connection (a write failed, or `None` within `give_up`).
async fn trickle_after_413(
    server: &Server,
    pause: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(post("/", Some(TOO_LARGE)).as_bytes())
        .await
        .expect("head");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("the 413");
    assert_eq!(&head, b"HTTP/1.1 413");
    let answered = Instant::now();
    let piece = vec![b'x'; 1024];
    while answered.elapsed() < give_up {
        if stream.write_all(&piece).await.is_err() {
            return Some(answered.elapsed());
        }
        tokio::time::sleep(pause).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn lingering_obeys_its_time_bound_and_holds_a_connection_slot_meanwhile() {
    let server = std::sync::Arc::new(
        serve(|config| {
            config.front_door = FrontDoor {
                linger_time: Duration::from_secs(1),
                max_connections: 8,
                ..FrontDoor::default()
            }
        })
        .await,
    );
    // Eight clients keep sending slowly after their 413: each is cut at the bound, not before
    // (they are read meanwhile) and not long after.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                trickle_after_413(&server, Duration::from_millis(50), Duration::from_secs(20)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The cap is reached by lingering connections: a ninth client waits its turn, then is served.
    let waited = Instant::now();
    let reply = server.get("/").await;
    assert_eq!(reply.status, 200);
    assert!(
        waited.elapsed() >= Duration::from_millis(300),
        "lingering connections count against the cap: served after {:?}",
        waited.elapsed()
    );
    for client in clients {
        let cut = client.await.unwrap().expect("cut within 20 s");
        assert!(
            cut >= Duration::from_millis(800) && cut < Duration::from_secs(6),
            "lingered {cut:?}, bound 1 s"
        );
    }
    assert_eq!(server.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn lingering_obeys_its_byte_bound() {
    let server = serve(|config| {
        config.front_door = FrontDoor {
            linger_time: Duration::from_secs(60),
            linger_bytes: 256 * 1024,
            ..FrontDoor::default()
        }
    })
    .await;
    // A client that sends as fast as it can after its 413 is cut once 256 KiB have been
    // discarded, long before the 60 s of the time bound.
    let cut = trickle_after_413(&server, Duration::ZERO, Duration::from_secs(30)).await;
    let cut = cut.expect("cut by the byte bound");
    assert!(cut < Duration::from_secs(10), "cut after {cut:?}");
}

/// Python's own `http.client` and `urllib`, which write the whole request before reading,
/// against `micros up`: each sees the status, not a broken pipe.
#[tokio::test(flavor = "multi_thread")]
async fn python_clients_read_early_refusals_from_micros_up() {
    let (dir, _) = crate::support::write_app(&app());
    let up = crate::cli::up_private(&[dir.path().to_str().unwrap()]).await;
    let script = r#"
import http.client, json, sys, urllib.error, urllib.request
host, port = sys.argv[1], int(sys.argv[2])
big = b"x" * 6_000_000

def post(path, body, headers=None, chunked=False):
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers or {}, encode_chunked=chunked)
        return connection.getresponse().status
    except Exception as error:
        return f"{type(error).__name__}: {error}"

def pieces():
    for i in range(0, len(big), 65536):
        yield big[i:i + 65536]

def urlopen():
    try:
        return urllib.request.urlopen(f"http://{host}:{port}/", data=big, timeout=30).status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception as error:
        return f"{type(error).__name__}: {error}"

print(json.dumps({
    "declared": post("/", big),
    "chunked": post("/", pieces(), {"Transfer-Encoding": "chunked"}, chunked=True),
    "private": post("/api/x", big),
    "urllib": urlopen(),
    "small": post("/", b"x" * 1000),
}))
"#;
    let output = tokio::process::Command::new("python3")
        .args(["-c", script, "127.0.0.1", &up.addr.port().to_string()])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        results,
        serde_json::json!({
            "declared": 413, "chunked": 413, "private": 401, "urllib": 413, "small": 200
        })
    );
    crate::cli::kill(up).await;
}
