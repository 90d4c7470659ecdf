//! Any bytes as what a client sends on one connection: raw HTTP/1.1 through hyper's HTTP/1
//! server, set up as `micros::serve` sets it up (the front door's header limits and timeout),
//! into `App::handle` of a real app of two Micros: the `hello` guest, primary and public, and the
//! `echo` guest at `/echo`, open only on `/open/*`; access control is on and no owner token
//! exists yet. The client sends the input, closes its side, and reads until the server closes.
//! Asserts:
//! - nothing panics, and every input is served within 5 s (a hang is a failure);
//! - everything the server writes is a sequence of responses, each starting `HTTP/1.1 `
//!   (`HTTP/1.0 ` only on a connection that sent an HTTP/1.0 request) with a status from
//!   `STATUSES`, framed as it says (length or chunks; the connection may end mid-body);
//! - every response of `App::handle` carries an `x-request-id` of 16 hex digits;
//! - a path into `/__space/` (however spelled, before or after `/echo` is stripped) other than
//!   the login, logout and data paths gets the runtime's 404, never a guest;
//! - `echo` is reached only on a path under `/open/`, as sent and once decoded and normalised;
//! - a guest never sees a credential the client sent: an app key, a bearer token, the owner
//!   cookie (in a `Cookie` header of visible ASCII: see `credentials`).
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use http::{HeaderMap, Method, Response, Version};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use libfuzzer_sys::fuzz_target;
use micros::{App, AuthMode, ClientAddr, Config, FrontDoor, Limits, Manifest, ResponseBody};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Bytes of input looked at, at most: keeps each input cheap.
const MAX_INPUT: usize = 64 * 1024;
/// Time to serve one input; past it, the input hangs the server.
const DEADLINE: Duration = Duration::from_secs(5);
/// A guest's execution time limit: well inside `DEADLINE`.
const EXECUTION_TIME: Duration = Duration::from_secs(2);
/// The client's address, as `micros::serve` passes it on.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50000);

/// The statuses a client may get, and who sends them.
const STATUSES: &[(u16, &str)] = &[
    // The status table (src/serving/status.rs).
    (400, "table"),
    (401, "table"),
    (404, "table"),
    (408, "table"),
    (413, "table"),
    (500, "table"),
    (501, "table"),
    (502, "table"),
    (503, "table"),
    (504, "table"),
    // The login and logout pages (src/services/auth/login.rs).
    (200, "login"),
    (303, "login"),
    (405, "login"),
    // The owner's data service (src/services/data/), behind the owner token.
    (201, "data"),
    (202, "data"),
    (207, "data"),
    (409, "data"),
    (507, "data"),
    // The guests: `hello` and `echo` answer 200.
    (200, "guest"),
    // hyper itself: `100 Continue`, and the answers to a request head it cannot read.
    (100, "hyper"),
    (414, "hyper"),
    (431, "hyper"),
];

/// Statuses only hyper sends, never `App::handle`.
const HYPER_ONLY: &[u16] = &[100, 414, 431];

const MANIFEST: &str = r#"v = 1
app_name = "fuzz"

[[micros]]
name = "hello"
src = "hello"
component = "micro.wasm"
primary = true
public = true

[[micros]]
name = "echo"
src = "echo"
component = "micro.wasm"
path = "/echo"
public_routes = ["/open/*"]
"#;

/// The runtime's own paths that answer something other than 404.
const LOGIN_PATH: &str = "/__space/login";
const LOGOUT_PATH: &str = "/__space/logout";

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: App,
    front_door: FrontDoor,
}

/// The app's folder, removed when the fuzzer exits.
static APP_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_app_dir() {
    if let Some(dir) = APP_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("micros-fuzz-front-door-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (name, guest) in [
        ("hello", micros_guests::HELLO),
        ("echo", micros_guests::ECHO),
    ] {
        std::fs::create_dir_all(dir.join(name)).expect("a Micro's folder");
        std::fs::copy(guest, dir.join(name).join("micro.wasm")).expect("copy a guest");
    }
    std::fs::write(dir.join("Spacefile.toml"), MANIFEST).expect("write the manifest");
    APP_DIR.set(dir.clone()).expect("the app is made once");
    // SAFETY: `remove_app_dir` is a plain function, safe to run at exit.
    unsafe {
        libc::atexit(remove_app_dir);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = Config {
        auth: AuthMode::Required,
        limits: Limits {
            execution_time: EXECUTION_TIME,
            ..Limits::default()
        },
        ..Config::default()
    };
    let manifest = Manifest::load(dir.join("Spacefile.toml")).expect("a valid manifest");
    let app = {
        let _in_runtime = runtime.enter();
        App::load(manifest, &config).expect("the app loads")
    };
    Harness {
        runtime,
        app,
        front_door: config.front_door,
    }
});

/// A request as the server read it, in the order it read them.
struct Seen {
    method: Method,
    version: Version,
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() > MAX_INPUT {
        return;
    }
    let harness = &*HARNESS;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let written = harness
        .runtime
        .block_on(async { tokio::time::timeout(DEADLINE, exchange(harness, bytes, &seen)).await })
        .unwrap_or_else(|_| panic!("the input was not served within {DEADLINE:?}"));
    let seen = seen.lock().expect("not poisoned");
    check_stream(&written, &seen);
});

/// Sends `bytes` on a new connection, closes the client's side and returns all the server wrote.
async fn exchange(
    harness: &'static Harness,
    bytes: &[u8],
    seen: &Arc<Mutex<Vec<Seen>>>,
) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(MAX_INPUT);
    let seen = Arc::clone(seen);
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let seen = Arc::clone(&seen);
        request.extensions_mut().insert(ClientAddr(PEER));
        async move {
            seen.lock().expect("not poisoned").push(Seen {
                method: request.method().clone(),
                version: request.version(),
            });
            let path = request.uri().path().to_string();
            let headers = request.headers().clone();
            let response = harness.app.handle(request).await;
            check_response(&path, &headers, &response);
            Ok::<_, Infallible>(response)
        }
    });
    let front_door = &harness.front_door;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(front_door.header_read_timeout)
        .max_headers(front_door.max_headers)
        .max_header_size(front_door.max_header_bytes)
        // Unlike `serve`: the client closes its side once it has sent the input, and without
        // this hyper would close the connection, unanswered, on seeing that end of input while a
        // request is still being served.
        .half_close(true);
    let connection = builder.serve_connection(TokioIo::new(server), service);
    let (mut reader, mut writer) = tokio::io::split(client);
    let send = async move {
        let _ = writer.write_all(bytes).await;
        let _ = writer.shutdown().await;
    };
    let receive = async move {
        let mut written = Vec::new();
        let _ = reader.read_to_end(&mut written).await;
        written
    };
    let (_, (), written) = tokio::join!(connection, send, receive);
    written
}

/// Checks one response of `App::handle` to a request for `path` with these headers.
fn check_response(path: &str, headers: &HeaderMap, response: &Response<ResponseBody>) {
    let status = response.status().as_u16();
    assert!(
        STATUSES.iter().any(|(s, _)| *s == status) && !HYPER_ONLY.contains(&status),
        "App::handle answered {path} with {status}, which no one documents"
    );
    let id = response.headers().get(micros::REQUEST_ID_HEADER);
    assert!(
        id.is_some_and(|id| id.len() == 16 && id.as_bytes().iter().all(u8::is_ascii_hexdigit)),
        "{path}: {status} with the request id {id:?}"
    );
    let echoed = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let echo_path = echoed("x-echo-path");
    let exempt = path == LOGIN_PATH
        || path == LOGOUT_PATH
        || path.starts_with(micros::data::BASE_PATH)
        || path.starts_with(micros::data::DRIVE_PATH);
    let stripped = path
        .strip_prefix("/echo")
        .filter(|rest| rest.starts_with('/'));
    if reaches_space(path) || stripped.is_some_and(reaches_space) {
        assert!(echo_path.is_none(), "{path} reached echo, as {echo_path:?}");
        if !exempt {
            assert_eq!(
                status, 404,
                "{path} is the runtime's, yet answered {status}"
            );
        }
    }
    if let Some(seen_path) = echo_path {
        // What echo saw is the path its access rule was checked on (after `/echo`).
        let seen_path = seen_path.split('?').next().unwrap_or_default();
        assert!(
            seen_path.starts_with("/open/")
                && normalized(seen_path).first().is_some_and(|s| s == "open"),
            "echo answered {path} (as {seen_path}), which is not under /open/"
        );
        let seen_headers = echoed("x-echo-headers").unwrap_or_default();
        for secret in credentials(headers) {
            assert!(
                !seen_headers.contains(&secret),
                "echo saw the credential `{secret}` among its headers: {seen_headers}"
            );
        }
    }
}

/// A path's segments once percent-decoded, with `.`, `..` and empty segments resolved, `\` taken
/// for `/`: an oracle written apart from the router.
fn normalized(path: &str) -> Vec<String> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut stack: Vec<String> = Vec::new();
    for part in decoded.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            part => stack.push(part.to_string()),
        }
    }
    stack
}

/// Whether a path, decoded and normalised the way a guest's framework might, is in `/__space/`.
fn reaches_space(path: &str) -> bool {
    normalized(path)
        .first()
        .is_some_and(|first| first.eq_ignore_ascii_case("__space"))
}

/// What the runtime adds to a request's headers before a guest sees it (`Host` when missing, the
/// client's address in `X-Forwarded-For` and `Forwarded`).
const ADDED_HEADERS: &str =
    "host\n127.0.0.1:4200\nx-forwarded-for\n127.0.0.1\nforwarded\nfor=127.0.0.1\n";

/// The credentials the client sent, as the runtime reads them: app keys, bearer tokens and owner
/// cookies. Only those that say which header they came from: 8 or more letters, digits, `-` and
/// `_`, with a letter, found once in all the request's headers and not in what the runtime adds.
fn credentials(headers: &HeaderMap) -> Vec<String> {
    let text = |value: &http::HeaderValue| String::from_utf8_lossy(value.as_bytes()).into_owned();
    let mut found: Vec<String> = Vec::new();
    for value in headers.get_all("x-space-app-key") {
        found.push(text(value).trim().to_string());
    }
    for value in headers.get_all(http::header::AUTHORIZATION) {
        if let Some((scheme, token)) = text(value).trim().split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            found.push(token.trim().to_string());
        }
    }
    // Every Cookie header, text or not: one that is not plain text once passed to the guest
    // whole, owner cookie and all (found by this target; seeds/front_door/cookie-not-text.http).
    for value in headers.get_all(http::header::COOKIE) {
        for pair in text(value).split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name.trim() == "micros_owner"
            {
                found.push(token.trim().trim_matches('"').to_string());
            }
        }
    }
    let all: String = headers
        .iter()
        .map(|(name, value)| format!("{name}\n{}\n", text(value)))
        .collect();
    found.retain(|secret| {
        secret.len() >= 8
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && secret.bytes().any(|b| b.is_ascii_alphabetic())
            && all.matches(secret.as_str()).count() == 1
            && !ADDED_HEADERS.contains(secret.as_str())
    });
    found
}

/// Checks all the server wrote on the connection, given the requests it read.
fn check_stream(written: &[u8], seen: &[Seen]) {
    let http10 = seen.iter().any(|s| s.version == Version::HTTP_10);
    let mut requests = seen.iter();
    let mut rest = written;
    while !rest.is_empty() {
        let shown = String::from_utf8_lossy(&rest[..rest.len().min(200)]).into_owned();
        assert!(
            rest.starts_with(b"HTTP/1.1 ") || (http10 && rest.starts_with(b"HTTP/1.0 ")),
            "the server wrote something other than a response: {shown:?}"
        );
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(rest) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) => {
                panic!("the server wrote a cut response head: {shown:?}")
            }
            Err(error) => panic!("the server wrote a bad response head ({error}): {shown:?}"),
        };
        let status = response.code.unwrap_or_default();
        assert!(
            STATUSES.iter().any(|(s, _)| *s == status),
            "the server answered {status}, which no one documents: {shown:?}"
        );
        rest = &rest[head..];
        if (100..200).contains(&status) {
            // An interim response: the final one follows.
            continue;
        }
        let method = requests.next().map(|s| &s.method);
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if method == Some(&Method::CONNECT) && (200..300).contains(&status) {
            // A tunnel: what follows is not HTTP.
            return;
        }
        if method == Some(&Method::HEAD) || status == 204 || status == 304 {
            continue;
        }
        if let Some(coding) = header("transfer-encoding") {
            assert!(coding.eq_ignore_ascii_case(b"chunked"), "{shown:?}");
            match chunked_length(rest) {
                Some(length) => rest = &rest[length..],
                // The connection ended mid-body.
                None => return,
            }
        } else if let Some(length) = header("content-length") {
            let length: usize = std::str::from_utf8(length)
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("a bad content-length: {shown:?}"));
            if rest.len() < length {
                // The connection ended mid-body.
                return;
            }
            rest = &rest[length..];
        } else {
            // The body runs to the end of the connection.
            return;
        }
    }
}

/// The length of a chunked body at the start of `bytes`, or `None` if it is cut short; panics if
/// the chunks are malformed.
fn chunked_length(bytes: &[u8]) -> Option<usize> {
    let line_end = |from: usize| {
        bytes[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let mut at = 0;
    loop {
        let end = line_end(at)?;
        let line = std::str::from_utf8(&bytes[at..end]).expect("a chunk size is text");
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .unwrap_or_else(|_| panic!("a bad chunk size line: {line:?}"));
        at = end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let end = line_end(at)?;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some(at);
                }
            }
        }
        if bytes.len() < at + size + 2 {
            return None;
        }
        assert_eq!(
            &bytes[at + size..at + size + 2],
            b"\r\n",
            "a chunk without its CRLF"
        );
        at += size + 2;
    }
}
