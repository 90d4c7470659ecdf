//! The `micros` command as a user runs it: `up` on port 0, `check`, `build`, signals, exit codes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micros_guests as guests;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::support::{micro, write_app};

const MICROS: &str = env!("CARGO_BIN_EXE_micros");

/// A running `micros up`, its address read from the first line of its stderr.
pub(crate) struct Up {
    child: Child,
    pub(crate) addr: std::net::SocketAddr,
    /// The lines of its stderr read so far. While it serves, log lines reach it from its log
    /// thread a moment after they were logged: wait for them with [`log_until`].
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `stderr` until it closes.
    reader: tokio::task::JoinHandle<()>,
}

/// `micros up --no-auth` with these arguments.
pub(crate) async fn up(args: &[&str]) -> Up {
    let mut args = args.to_vec();
    args.push("--no-auth");
    up_private(&args).await
}

/// `micros up` with these arguments, access control as configured.
pub(crate) async fn up_private(args: &[&str]) -> Up {
    up_logging(args, "info").await
}

/// The rest of a child's stderr, line by line.
type StderrLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Starts `micros up` with these arguments and `RUST_LOG=rust_log`: the process, its address
/// (read from the first line of its stderr) and the rest of its stderr.
async fn start(args: &[&str], rust_log: &str) -> (Child, std::net::SocketAddr, StderrLines) {
    let mut child = Command::new(MICROS)
        .arg("up")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start micros");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("micros listening on http://")
        .unwrap_or_else(|| panic!("first line: {first}"));
    (child, addr.parse().unwrap(), lines)
}

/// `micros up` with these arguments and `RUST_LOG=rust_log`.
async fn up_logging(args: &[&str], rust_log: &str) -> Up {
    let (child, addr, mut lines) = start(args, rust_log).await;
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = stderr.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Up {
        child,
        addr,
        stderr,
        reader,
    }
}

/// `GET path`, waiting up to 60 s (the app may still be loading).
pub(crate) async fn get(addr: std::net::SocketAddr, path: &str) -> crate::support::Reply {
    // The app may still be loading: connections wait in the listen queue until it serves.
    let request = http::Request::get(path)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), crate::support::send(addr, request))
        .await
        .expect("response in time")
}

/// `GET path` from a running `micros up`, and its stderr once the request's access line is in
/// it (and so every line the request logged before it).
async fn get_logged(up: &Up, path: &str) -> (crate::support::Reply, String) {
    let reply = get(up.addr, path).await;
    let stderr = access_logged(up, reply.header("x-request-id").unwrap()).await;
    (reply, stderr)
}

/// The stderr of a running `micros up` once `done` holds for it; a panic showing it if that takes
/// more than 30 s.
pub(crate) async fn log_until(up: &Up, done: impl Fn(&str) -> bool) -> String {
    for _ in 0..600 {
        let stderr = up.stderr.lock().unwrap().join("\n");
        if done(&stderr) {
            return stderr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the log never got what the test waits for:\n{}",
        up.stderr.lock().unwrap().join("\n")
    );
}

/// The stderr of a running `micros up` once the access line of request `id` is in it, in either
/// log format: a request's access line is its last.
pub(crate) async fn access_logged(up: &Up, id: &str) -> String {
    log_until(up, |stderr| {
        stderr
            .lines()
            .any(|l| l.contains("micros::access") && l.contains(id))
    })
    .await
}

/// The owner token `micros up` printed at its first start.
async fn owner_token(up: &Up) -> String {
    for _ in 0..50 {
        {
            let stderr = up.stderr.lock().unwrap();
            if let Some(at) = stderr
                .iter()
                .position(|l| l.starts_with("The app's owner token (shown this once"))
                && let Some(line) = stderr.get(at + 2)
            {
                return line.trim().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no owner token in:\n{}",
        up.stderr.lock().unwrap().join("\n")
    );
}

/// The address of the admin listener, from the line `micros up` printed.
pub(crate) fn admin_addr(up: &Up) -> std::net::SocketAddr {
    let stderr = up.stderr.lock().unwrap().join("\n");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("micros admin on http://"))
        .and_then(|l| l.strip_suffix("/__space/metrics"))
        .unwrap_or_else(|| panic!("no admin address in:\n{stderr}"))
        .parse()
        .unwrap()
}

/// The metrics text the admin listener serves.
pub(crate) async fn scrape(up: &Up) -> String {
    get(admin_addr(up), "/__space/metrics").await.text()
}

async fn get_with(
    addr: std::net::SocketAddr,
    path: &str,
    header: (&str, &str),
) -> crate::support::Reply {
    let request = http::Request::get(path)
        .header(header.0, header.1)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    crate::support::send(addr, request).await
}

/// Kills `micros up` with SIGKILL, as a crash or an OOM killer would, and waits for it.
pub(crate) async fn kill(mut up: Up) {
    up.child.start_kill().unwrap();
    tokio::time::timeout(Duration::from_secs(30), up.child.wait())
        .await
        .unwrap()
        .unwrap();
}

/// Stops `micros up` with SIGTERM; its exit status.
pub(crate) async fn terminate(up: Up) -> std::process::ExitStatus {
    stop(up).await.0
}

/// Sends SIGTERM to `child`; its exit status.
async fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap()
}

/// Stops `micros up` with SIGTERM; its exit status and all it wrote to stderr.
async fn stop(mut up: Up) -> (std::process::ExitStatus, String) {
    let status = sigterm(&mut up.child).await;
    tokio::time::timeout(Duration::from_secs(30), up.reader)
        .await
        .unwrap()
        .unwrap();
    let stderr = up.stderr.lock().unwrap().join("\n");
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_serves_logs_guest_output_and_stops_on_sigterm() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    let up = up(&[dir.path().to_str().unwrap()]).await;
    let (reply, stderr) = get_logged(&up, "/?log").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello from micros\n");
    let request_id = reply.header("x-request-id").unwrap();
    for stream in ["stdout", "stderr"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("hello on {stream}")))
            .unwrap_or_else(|| panic!("no guest {stream} line in:\n{stderr}"));
        assert!(line.contains(&format!("request_id={request_id}")), "{line}");
        assert!(line.contains("micro=web"), "{line}");
        assert!(line.contains(&format!("stream=\"{stream}\"")), "{line}");
    }
    let access = stderr
        .lines()
        .find(|l| l.contains(&format!("request_id={request_id}")) && l.contains("status=200"));
    assert!(
        access.is_some_and(|l| l.contains("method=GET") && l.contains("path=/")),
        "{stderr}"
    );
    assert!(
        stderr.contains("AUTHENTICATION IS OFF (--no-auth)"),
        "{stderr}"
    );
    let status = terminate(up).await;
    assert!(status.success(), "{status}");
}

/// `RUST_LOG` filters by target and by span alike: either way below, the guest's line in the
/// request span is written and the access line (outside it) is not.
#[tokio::test(flavor = "multi_thread")]
async fn rust_log_filters_by_target_and_by_span() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    for rust_log in ["info,micros::access=off", "warn,[request]=info"] {
        let up = up_logging(&[dir.path().to_str().unwrap(), "--no-auth"], rust_log).await;
        let reply = get(up.addr, "/?log").await;
        assert_eq!(reply.status, 200);
        let request_id = reply.header("x-request-id").unwrap();
        // All of it, once stopped: a line filtered out is not one still on its way.
        let (status, stderr) = stop(up).await;
        assert!(status.success());
        let guest = stderr.lines().find(|l| l.contains("hello on stdout"));
        assert!(
            guest.is_some_and(|l| l.contains(&format!("request_id={request_id}"))),
            "RUST_LOG={rust_log}:\n{stderr}"
        );
        assert!(
            !stderr.contains("micros::access"),
            "RUST_LOG={rust_log}:\n{stderr}"
        );
    }
}

/// Log lines are written in batches by a thread of their own while serving, yet the log keeps
/// its order (a warning is not written before the lines logged ahead of it) and SIGTERM loses
/// none of them, not even the last, logged just before the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn batched_log_lines_keep_their_order_and_sigterm_writes_them_all() {
    let (dir, _) = write_app(&crate::limits::with_hello(micro("web", guests::PANIC)));
    let up = up(&[dir.path().to_str().unwrap()]).await;
    let hello = get(up.addr, "/hello").await;
    assert_eq!(hello.status, 200);
    let crashed = get(up.addr, "/").await;
    assert_eq!(crashed.status, 500);
    let stderr = log_until(&up, |stderr| stderr.contains("execution failed")).await;
    let lines: Vec<&str> = stderr.lines().collect();
    let position = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let hello_id = hello.header("x-request-id").unwrap();
    let hello_access = position(&|l| l.contains("micros::access") && l.contains(hello_id));
    let warning = position(&|l| l.contains("WARN") && l.contains("execution failed"));
    assert!(
        hello_access.is_some() && hello_access < warning,
        "the access line of the request before the warning comes first:\n{stderr}"
    );
    // A burst answered just before SIGTERM: some of its lines may still be queued when it comes.
    let mut ids = Vec::new();
    for _ in 0..40 {
        let reply = get(up.addr, "/hello").await;
        ids.push(reply.header("x-request-id").unwrap().to_string());
    }
    let (status, stderr) = stop(up).await;
    assert!(status.success());
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| {
            !stderr
                .lines()
                .any(|l| l.contains("micros::access") && l.contains(id.as_str()))
        })
        .collect();
    assert!(lost.is_empty(), "access lines lost: {lost:?}\n{stderr}");
    // The line logged last, just before the process exits, is written too.
    assert!(
        stderr.ends_with("stopped: every request and action in flight finished"),
        "{stderr}"
    );
}

/// The log's reader going away (a collector restarted, `micros up 2>&1 | head`) takes no request
/// with it: the lines that cannot be written are dropped, at load and while serving, and every
/// request is answered.
#[tokio::test(flavor = "multi_thread")]
async fn requests_are_answered_after_the_log_reader_goes_away() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    let args = [dir.path().to_str().unwrap(), "--no-auth"];
    let (mut child, addr, lines) = start(&args, "info").await;
    // Gone before the app has loaded: every line from here on meets a closed pipe.
    drop(lines);
    for _ in 0..5 {
        let reply = get(addr, "/?log").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from micros\n");
    }
    let status = sigterm(&mut child).await;
    assert!(status.success(), "{status}");
}

/// An execution still writing its body after the head runs on a task of its own, and what it
/// logs there is still in its request's span.
#[tokio::test(flavor = "multi_thread")]
async fn the_rest_of_an_execution_logs_in_its_request_span() {
    let (dir, _) = write_app(&[micro("web", guests::BIG).primary()]);
    let args = [dir.path().to_str().unwrap(), "--no-auth"];
    let up = up_logging(&args, "info,micros::sandbox=debug").await;
    // Far more than the body's channel holds: the guest is still writing when the head is sent.
    let (reply, stderr) = get_logged(&up, "/?bytes=4000000").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text().len(), 4_000_000);
    let request_id = reply.header("x-request-id").unwrap();
    let finished = stderr.lines().find(|l| l.contains("execution finished"));
    assert!(
        finished.is_some_and(|l| l.contains(&format!("request_id={request_id}"))),
        "{stderr}"
    );
    assert!(terminate(up).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn up_applies_limit_flags_and_presets() {
    let (dir, _) = write_app(&[
        micro("web", guests::SPIN).primary(),
        micro("env", guests::ENV)
            .toml("[[micros.presets.env]]\nname = \"GREETING\"\ndefault = \"hello\""),
    ]);
    let up = up(&[
        dir.path().to_str().unwrap(),
        "--timeout",
        "1s",
        "--env",
        "env.GREETING=hi there",
        "--hostname",
        "notes.example",
    ])
    .await;
    let reply = get(up.addr, "/").await;
    assert_eq!(reply.status, 504);
    assert_eq!(
        reply.text(),
        "micro `web`: execution time limit of 1s exceeded\n"
    );
    let env = get(up.addr, "/env").await.text();
    assert!(env.contains("\nGREETING=hi there\n"), "{env}");
    assert!(
        env.contains("\nDETA_SPACE_APP_HOSTNAME=notes.example\n"),
        "{env}"
    );
    assert!(terminate(up).await.success());
}

pub(crate) async fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(MICROS)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run micros");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_accepts_a_good_app_and_names_the_problem_in_a_bad_one() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    let (code, stderr) = run(&["check", dir.path().to_str().unwrap()]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (0, "ok: 1 Micro(s) valid and compiled\n")
    );
    // Of the state folder, check touches only the compile cache: no keys, credentials or /tmp.
    let state: Vec<String> = std::fs::read_dir(dir.path().join(".micros"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(state, ["cache"]);

    let (code, stderr) = run(&["check", "tests/manifests/two-primaries"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: {}",
            std::fs::read_to_string("tests/manifests/two-primaries/expected.txt").unwrap()
        )
    );

    let (code, stderr) = run(&["check", "tests/manifests/core-module"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is a core WebAssembly module, not a component"),
        "{stderr}"
    );

    let (code, stderr) = run(&["check", "/nonexistent/app"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: cannot read `/nonexistent/app`: No such file or directory (os error 2)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn up_refuses_an_undeclared_preset() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    let (code, stderr) = run(&[
        "up",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--env",
        "SECRET=x",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with(
            "error: --env SECRET: no Micro declares a preset `SECRET`; only variables under `[[micros.presets.env]]` can be set\n"
        ),
        "{stderr}"
    );
    let (code, stderr) = run(&["up", dir.path().to_str().unwrap(), "--env", "PORT=1"]).await;
    assert_eq!(code, 2, "clap rejects a reserved name: {stderr}");
    assert!(stderr.contains("`PORT` is set by the runtime"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_sets_the_threads_that_serve() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    let app = dir.path().to_str().unwrap();
    let (code, stderr) = run(&["up", app, "--threads", "0"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid value '0' for '--threads <N>': 0 is not in 1..=1024"),
        "{stderr}"
    );
    for threads in ["1", "3"] {
        let up = up(&[app, "--threads", threads]).await;
        assert_eq!(get(up.addr, "/").await.status, 200);
        let log = log_until(&up, |log| log.contains("serving on")).await;
        assert!(
            log.lines()
                .any(|l| l.contains("serving on") && l.ends_with(&format!(" threads={threads}"))),
            "{log}"
        );
        kill(up).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn build_runs_commands_in_src_and_stops_at_a_failure() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO)
        .primary()
        .toml("commands = [\"echo built > built.txt\", \"pwd > where.txt\"]")]);
    let (code, stderr) = run(&["build", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("web/built.txt")).unwrap(),
        "built\n"
    );
    let src = dir.path().join("web").canonicalize().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("web/where.txt"))
            .unwrap()
            .trim(),
        src.to_str().unwrap()
    );

    let (dir, _) = write_app(&[micro("web", guests::HELLO)
        .primary()
        .toml("commands = [\"exit 3\", \"touch never\"]")]);
    let (code, stderr) = run(&["build", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error: micro `web`: build command `exit 3` failed (exit status: 3)"),
        "{stderr}"
    );
    assert!(!dir.path().join("web/never").exists());
}

/// The README's demo command, as a new user runs it: build the demo's Micros, serve, answer.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_builds_and_serves() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let up = up_private(&["examples/demo", "--build", "--state-dir", state_dir]).await;
    let page = tokio::time::timeout(
        Duration::from_secs(600),
        crate::support::send(
            up.addr,
            http::Request::get("/")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .expect("the demo answers after its build");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<h1>Hello from micros</h1>"),
        "{}",
        page.text()
    );
    // The page is public; the API is private: the owner token printed at the first start, or
    // an app key made with `micros keys create`, opens it.
    assert_eq!(get(up.addr, "/api").await.status, 401);
    let token = owner_token(&up).await;
    let bearer = format!("Bearer {token}");
    let api = get_with(up.addr, "/api", ("authorization", &bearer)).await;
    assert_eq!(
        api.text(),
        r#"{"micro":"api","type":"normal","version":"0.1.0"}"#
    );
    let created = Command::new(MICROS)
        .args([
            "keys",
            "create",
            "notes-cli",
            "examples/demo",
            "--state-dir",
            state_dir,
        ])
        .output()
        .await
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(key.len(), 40, "{key}");
    let saved = crate::support::send(
        up.addr,
        http::Request::post("/api/notes")
            .header("x-space-app-key", &key)
            .body(http_body_util::Full::new(bytes::Bytes::from("buy milk")))
            .unwrap(),
    )
    .await;
    assert_eq!(saved.status, 201);
    let notes = get_with(up.addr, "/api/notes", ("x-space-app-key", &key)).await;
    assert_eq!(notes.text(), r#"["buy milk"]"#);
    let listed = Command::new(MICROS)
        .args(["keys", "list", "examples/demo", "--state-dir", state_dir])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with("notes-cli  20"),
        "{listed:?}"
    );
    let revoked = Command::new(MICROS)
        .args([
            "keys",
            "revoke",
            "notes-cli",
            "examples/demo",
            "--state-dir",
            state_dir,
        ])
        .output()
        .await
        .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        get_with(up.addr, "/api/notes", ("x-space-app-key", &key))
            .await
            .status,
        401
    );
    let again = Command::new(MICROS)
        .args([
            "keys",
            "revoke",
            "notes-cli",
            "examples/demo",
            "--state-dir",
            state_dir,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "error: the app has no key named `notes-cli`: `micros keys list` shows them\n"
    );
    // Rotated by the CLI while the server runs: the old token is refused at once.
    let rotated = Command::new(MICROS)
        .args([
            "owner-token",
            "examples/demo",
            "--rotate",
            "--state-dir",
            state_dir,
        ])
        .output()
        .await
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let new_token = String::from_utf8(rotated.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        get_with(up.addr, "/api", ("authorization", &bearer))
            .await
            .status,
        401
    );
    let new_bearer = format!("Bearer {new_token}");
    assert_eq!(
        get_with(up.addr, "/api", ("authorization", &new_bearer))
            .await
            .status,
        200
    );
    assert!(terminate(up).await.success());
}

/// Guest output is logged up to the per-execution limit, then dropped with one marker.
#[tokio::test(flavor = "multi_thread")]
async fn guest_output_obeyed_and_violated() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary()]);
    // Each line is 17 bytes with its newline: 60 lines fit in 1 KiB, 200 do not.
    let up = up(&[dir.path().to_str().unwrap(), "--guest-log-limit", "1KiB"]).await;
    for (lines, logged, dropped) in [(60, 60, 0), (200, 60, 200 * 17 - 1024)] {
        let reply = get(up.addr, &format!("/?flood={lines}")).await;
        assert_eq!(reply.text(), "hello from micros\n");
        let id = reply.header("x-request-id").unwrap().to_string();
        let stderr = access_logged(&up, &id).await;
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&format!("request_id={id}")))
            .collect();
        let flood = ours.iter().filter(|l| l.contains("flood line")).count();
        assert!(
            flood == logged || flood == logged + 1,
            "{lines} lines: {flood} logged"
        );
        let marker = ours.iter().find(|l| l.contains("guest output truncated"));
        if dropped == 0 {
            assert!(marker.is_none(), "{marker:?}");
        } else {
            let marker = marker.expect("a truncation marker");
            assert!(
                marker.contains(&format!("dropped_bytes={dropped}")),
                "{marker}"
            );
        }
    }
    assert!(terminate(up).await.success());
}

/// A component that is not a Micro (a `wasi:cli` command, no HTTP handler) is refused at load,
/// by `check` and by `up`, naming the Micro and what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_component_is_not_a_micro() {
    let (dir, _) = write_app(&[micro("web", guests::COMMAND).primary()]);
    let expected = "error: micro `web` does not export `wasi:http/incoming-handler`: build it as a wasi:http proxy: \
                    no exported instance named `wasi:http/incoming-handler@0.2.12`\n";
    let (code, stderr) = run(&["check", dir.path().to_str().unwrap()]).await;
    assert_eq!((code, stderr.as_str()), (1, expected));
    let (code, stderr) = run(&[
        "up",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(stderr.ends_with(expected), "{stderr}");
}

/// Compiling is budgeted: the defaults let every guest through (every other test), and a
/// component over the operator's budget of time or memory is refused at load, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn compile_budget_obeyed_and_violated() {
    let (dir, _) = write_app(&[micro("web", guests::BIG).primary()]);
    let app = dir.path().to_str().unwrap();
    let component = dir.path().join("web/micro.wasm");
    let (code, stderr) = run(&["check", app, "--compile-timeout", "60s"]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (0, "ok: 1 Micro(s) valid and compiled\n")
    );
    // The budget applies to compiling: a component this runtime compiled (and cached) before
    // loads without it, so the violations below start from an empty state folder each.
    let (code, _) = run(&["check", app, "--compile-timeout", "1ms"]).await;
    assert_eq!(code, 0);
    std::fs::remove_dir_all(dir.path().join(".micros")).unwrap();
    let (code, stderr) = run(&["check", app, "--compile-timeout", "1ms"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: micro `web`: compiling `{}` took longer than the budget of 1ms; raise it with \
             --compile-timeout if the component is trusted\n",
            component.display()
        )
    );
    let (code, stderr) = run(&[
        "up",
        app,
        "--listen",
        "127.0.0.1:0",
        "--compile-memory",
        "1B",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with(&format!(
            "error: micro `web`: compiling `{}` took more than the budget of 1 bytes of memory; \
             raise it with --compile-memory if the component is trusted\n",
            component.display()
        )),
        "{stderr}"
    );
}

/// The `/tmp` flags reach the sandbox, and each refusal is logged with its `error.type`, in the
/// request's span.
#[tokio::test(flavor = "multi_thread")]
async fn tmp_flags_apply_and_refusals_are_logged() {
    let (dir, _) = write_app(&[micro("web", guests::TMPFILL).primary()]);
    let app = dir.path().to_str().unwrap();
    let up = up(&[app, "--tmp-limit", "8KiB", "--tmp-entries", "2"]).await;
    let reply = get(up.addr, "/rawfill?name=a&bytes=16384").await;
    assert_eq!(reply.text(), "wrote 8192: insufficient-space");
    let request_id = reply.header("x-request-id").unwrap().to_string();
    assert_eq!(
        get(up.addr, "/count?prefix=f&n=5").await.text(),
        "made 1: StorageFull"
    );
    let last = get(up.addr, "/symlink?target=/etc&name=l").await;
    assert_eq!(last.text(), "not-permitted");
    let stderr = access_logged(&up, last.header("x-request-id").unwrap()).await;
    let full = stderr
        .lines()
        .find(|l| l.contains("/tmp is full: 8192 bytes of file data"))
        .unwrap_or_else(|| panic!("no refusal logged in:\n{stderr}"));
    assert!(full.contains("error.type=\"tmp_full\""), "{full}");
    assert!(full.contains(&format!("request_id={request_id}")), "{full}");
    assert!(
        stderr.contains("/tmp is full: 2 files, folders and links"),
        "{stderr}"
    );
    assert!(stderr.contains("error.type=\"tmp_symlink\""), "{stderr}");
    assert!(terminate(up).await.success());
}

/// An outbound request that is denied is logged with the rule that denied it, in the request's
/// span; a bad `--allow-outbound` is refused naming it.
#[tokio::test(flavor = "multi_thread")]
async fn outbound_denials_are_logged_with_their_rule() {
    let (dir, _) = write_app(&[micro("web", guests::FETCH).primary()]);
    let app = dir.path().to_str().unwrap();
    let up = up(&[app]).await;
    let reply = get(up.addr, "/?url=http://127.0.0.1:9/").await;
    assert_eq!(reply.text(), "error: DestinationIpProhibited");
    let request_id = reply.header("x-request-id").unwrap().to_string();
    let stderr = access_logged(&up, &request_id).await;
    let line = stderr
        .lines()
        .find(|l| l.contains("outbound request denied: loopback"))
        .unwrap_or_else(|| panic!("no denial logged in:\n{stderr}"));
    for field in [
        "error.type=\"outbound_denied\"",
        "rule=\"loopback\"",
        "ip=127.0.0.1",
        "micro=\"web\"",
        &format!("request_id={request_id}"),
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(terminate(up).await.success());

    let (code, stderr) = run(&["up", app, "--allow-outbound", "http://x"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`http://x` is neither a network (10.0.0.0/8, 127.0.0.1), nor a host name"),
        "{stderr}"
    );
}

/// A body of declared length is complete when its last byte is sent (the server reads no
/// further): logged `ok`, not as a client that went away, and its execution is not stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_declared_length_body_sent_whole_is_logged_ok() {
    let (dir, _) = write_app(&[micro("web", guests::BIG).primary()]);
    let up = up(&[dir.path().to_str().unwrap()]).await;
    let declared = get(up.addr, "/?bytes=100000&declare").await;
    assert_eq!(declared.header("content-length"), Some("100000"));
    assert_eq!(declared.status, 200);
    assert_eq!(declared.text().len(), 100_000);
    let streamed = get(up.addr, "/?bytes=100").await;
    assert_eq!(streamed.header("content-length"), None);
    let stderr = access_logged(&up, streamed.header("x-request-id").unwrap()).await;
    for (reply, bytes) in [(&declared, 100_000), (&streamed, 100)] {
        let id = reply.header("x-request-id").unwrap();
        let line = stderr
            .lines()
            .find(|l| l.contains("micros::access") && l.contains(id))
            .unwrap_or_else(|| panic!("no access line for {id} in:\n{stderr}"));
        assert!(
            line.contains(&format!("bytes_out={bytes} outcome=\"ok\"")),
            "{line}"
        );
    }
    assert!(terminate(up).await.success());
}

/// `--log-format json`: one access line per request with its fields, and `--admin`: the
/// metrics move as requests are served.
#[tokio::test(flavor = "multi_thread")]
async fn access_log_and_metrics() {
    let (dir, _) = write_app(&[
        micro("web", guests::HELLO).primary().toml("public = true"),
        micro("spin", guests::SPIN)
            .path("/spin")
            .toml("public = true"),
        micro("echo", guests::ECHO)
            .path("/echo")
            .toml("public = true"),
        micro("tmp", guests::TMPFILL)
            .path("/tmp")
            .toml("public_routes = [\"/rawfill\"]"),
        micro("fetch", guests::FETCH)
            .path("/fetch")
            .toml("public = true"),
    ]);
    let app = dir.path().to_str().unwrap();
    let up = up_private(&[
        app,
        "--admin",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--timeout",
        "1s",
        "--max-request-body",
        "1KiB",
        "--tmp-limit",
        "8KiB",
    ])
    .await;
    // Breaches inside an execution, answered 200 by the guests: the /tmp quota and the
    // outbound guard count them.
    let full = get(up.addr, "/tmp/rawfill?name=a&bytes=16384").await;
    assert_eq!(full.text(), "wrote 8192: insufficient-space");
    let denied = get(up.addr, "/fetch?url=http://127.0.0.1:9/").await;
    assert_eq!(denied.text(), "error: DestinationIpProhibited");
    let ok = get(up.addr, "/").await;
    assert_eq!(ok.status, 200);
    assert_eq!(get(up.addr, "/spin").await.status, 504);
    assert_eq!(get(up.addr, "/tmp/count").await.status, 401);
    let big = crate::support::send(
        up.addr,
        http::Request::post("/")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                2048
            ])))
            .unwrap(),
    )
    .await;
    assert_eq!(big.status, 413);
    let posted = crate::support::send(
        up.addr,
        http::Request::post("/echo")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"12345",
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(posted.status, 200);
    // The seven requests' access lines.
    let stderr = log_until(&up, |stderr| {
        let lines = stderr.lines();
        lines
            .filter(|l| l.contains("\"target\":\"micros::access\""))
            .count()
            >= 7
    })
    .await;
    let access = |request_id: &str| -> String {
        stderr
            .lines()
            .find(|l| l.contains("\"target\":\"micros::access\"") && l.contains(request_id))
            .unwrap_or_else(|| panic!("no access line for {request_id} in:\n{stderr}"))
            .to_string()
    };
    let line = access(ok.header("x-request-id").unwrap());
    for field in [
        "\"client\":\"127.0.0.1\"",
        "\"method\":\"GET\"",
        "\"path\":\"/\"",
        "\"micro\":\"web\"",
        "\"status\":200",
        "\"bytes_in\":0",
        "\"bytes_out\":18",
        "\"outcome\":\"ok\"",
        "\"auth\":\"public\"",
        "\"duration_ms\":",
        "\"timestamp\":",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let line = access(posted.header("x-request-id").unwrap());
    // Bytes in are the body the Micro read; the echo reads it all and sends it back.
    assert!(line.contains("\"bytes_in\":5"), "{line}");
    assert!(line.contains("\"bytes_out\":5"), "{line}");
    assert!(line.contains("\"method\":\"POST\""), "{line}");
    assert!(line.contains("\"micro\":\"echo\""), "{line}");
    let count = |outcome: &str| {
        stderr
            .lines()
            .filter(|l| {
                l.contains("\"target\":\"micros::access\"")
                    && l.contains(&format!("\"outcome\":\"{outcome}\""))
            })
            .count()
    };
    assert_eq!(
        [
            count("ok"),
            count("timeout"),
            count("auth"),
            count("payload")
        ],
        [4, 1, 1, 1]
    );
    let admin = admin_addr(&up);
    let metrics = get(admin, "/__space/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = metrics.text();
    for line in [
        "micros_requests_total{micro=\"web\",status=\"200\"} 1",
        "micros_requests_total{micro=\"echo\",status=\"200\"} 1",
        "micros_requests_total{micro=\"web\",status=\"413\"} 1",
        "micros_requests_total{micro=\"spin\",status=\"504\"} 1",
        "micros_requests_total{micro=\"tmp\",status=\"401\"} 1",
        "micros_requests_total{micro=\"tmp\",status=\"200\"} 1",
        "micros_request_duration_seconds_count{micro=\"web\"} 2",
        "micros_limit_breaches_total{kind=\"timeout\"} 1",
        "micros_limit_breaches_total{kind=\"payload\"} 1",
        "micros_limit_breaches_total{kind=\"tmp\"} 1",
        "micros_limit_breaches_total{kind=\"outbound\"} 1",
        "micros_executions_in_flight{micro=\"spin\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("micros_resident_memory_bytes ") && !l.ends_with(" 0")),
        "{text}"
    );
    assert_eq!(get(admin, "/").await.status, 404);
    assert!(terminate(up).await.success());

    // The metrics take no credentials: not on a public address unless the operator says so.
    let (code, stderr) = run(&["up", app, "--admin", "0.0.0.0:0"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--admin 0.0.0.0:0: not a loopback address"),
        "{stderr}"
    );
}

/// `micros check` fills the compile cache; `micros up` then loads from it instead of compiling,
/// and a cached file that was tampered with is compiled again, never loaded.
#[tokio::test(flavor = "multi_thread")]
async fn check_fills_the_compile_cache_and_up_uses_it() {
    let (dir, _) = write_app(&[micro("web", guests::HELLO).primary().toml("public = true")]);
    let app = dir.path().to_str().unwrap();
    let (code, stderr) = run(&["check", app]).await;
    assert_eq!(code, 0, "{stderr}");
    let cached: Vec<_> = std::fs::read_dir(dir.path().join(".micros/cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let up_once = || async {
        let up = up_private(&[app]).await;
        assert_eq!(get(up.addr, "/").await.text(), "hello from micros\n");
        let (status, stderr) = stop(up).await;
        assert!(status.success());
        stderr
    };
    let stderr = up_once().await;
    assert!(stderr.contains("loaded from the compile cache"), "{stderr}");
    assert!(!stderr.contains("compile_ms"), "{stderr}");
    let mut file = std::fs::read(&cached[0]).unwrap();
    let middle = file.len() / 2;
    file[middle] ^= 0xff;
    std::fs::write(&cached[0], &file).unwrap();
    let stderr = up_once().await;
    assert!(
        stderr.contains("has no valid seal: ignored, compiling again"),
        "{stderr}"
    );
    assert!(stderr.contains("compile_ms"), "{stderr}");
    assert!(
        !stderr.contains("loaded from the compile cache"),
        "{stderr}"
    );
    // Compiled again, the cache holds a good copy once more.
    assert!(up_once().await.contains("loaded from the compile cache"));
}
