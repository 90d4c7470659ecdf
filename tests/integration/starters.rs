//! The starters of `micros new`, in Rust, Python and JavaScript, and the Flask example: each built
//! with its real toolchain (pinned in its build `commands`) and served by `micros up`; every
//! starter answers the same contract, and the Python and JavaScript ones are held to the memory
//! and time limits like any Micro.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{Up, terminate, up};
use crate::watch::logged_within;

const MICROS: &str = env!("CARGO_BIN_EXE_micros");

/// Routes appended to the Python starter's `app.py` before it is built, to drive the limits.
const PYTHON_LIMIT_ROUTES: &str = r#"


@app.get("/__test/hog")
def hog(req):
    block = bytearray(int(req.query.get("mb", "1")) * 1024 * 1024)
    return {"held": len(block)}


@app.get("/__test/spin")
def spin(req):
    while True:
        pass


SEEN = []  # module state: a fresh interpreter per request starts it empty


@app.get("/__test/fresh")
def fresh(req):
    import os
    found = {"seen": len(SEEN), "env": os.environ.get("MICROS_TEST_MARK"), "heap": 0}
    marks = bytearray(8 * 1024 * 1024)
    found["heap"] = marks.count(0xA5)
    marks[:] = b"\xa5" * len(marks)
    SEEN.append(1)
    os.environ["MICROS_TEST_MARK"] = "marked"
    return found
"#;

/// Routes appended to the JavaScript starter's `app.js` before it is built.
const JS_LIMIT_ROUTES: &str = r#"

route("GET", "/__test/hog", (request, url) => {
  const mb = Number(url.searchParams.get("mb") ?? "1");
  const bytes = new Uint8Array(mb * 1024 * 1024);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = 1;
  return json({ held: bytes.length });
});

route("GET", "/__test/spin", () => {
  for (;;) {}
});

// A handler that throws, and one whose promise rejects: both are the starter's JSON 500.
route("GET", "/__test/throws", () => {
  throw new Error("thrown");
});
route("GET", "/__test/rejects", async () => {
  await null;
  throw new Error("rejected");
});

// Module state and a global: a fresh engine per request starts without them. (A typed array
// is zeroed by the language itself, so the heap is the `fresh` guest's and Python's to check.)
const SEEN = [];
route("GET", "/__test/fresh", () => {
  const found = { seen: SEEN.length, global: globalThis.microsTestMark ?? null };
  SEEN.push(1);
  globalThis.microsTestMark = "marked";
  return json(found);
});
"#;

/// Fails the test, saying how to install it, when a toolchain a starter needs is missing: a
/// starter that cannot be built is a failure, never a skip.
pub(crate) fn require(program: &str, args: &[&str], install: &str) {
    let found = std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "`{program} {}` failed: this test builds a starter with it\n  install: {install}",
        args.join(" ")
    );
}

/// `micros new` for `language` in a fresh folder, with `extra` appended to `source` (relative
/// to the app) when given; then `micros build`, whose output is shown if it fails.
async fn new_and_build(
    language: &str,
    extra: Option<(&str, &str)>,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let app = parent.path().join(format!("{language}-app"));
    let made = tokio::process::Command::new(MICROS)
        .args(["new", app.to_str().unwrap(), "--lang", language])
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    if let Some((source, lines)) = extra {
        append(&app.join(source), lines);
    }
    build(&app).await;
    (parent, app)
}

/// `micros build APP`, its output shown if it fails.
pub(crate) async fn build(app: &Path) {
    let built = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(MICROS)
            .args(["build", app.to_str().unwrap()])
            .output(),
    )
    .await
    .expect("the build finishes within 15 minutes")
    .unwrap();
    assert!(
        built.status.success(),
        "`micros build` failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
}

/// A reply: status, content type, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{}: {}",
            self.content_type,
            self.body
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends a request; the first may wait while the app compiles (a Python component is ~20 MB).
pub(crate) async fn send(
    up: &Up,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut request = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some((content_type, bytes)) => {
            request = request.header("content-type", content_type);
            bytes
        }
        None => Vec::new(),
    };
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
        .unwrap();
    let reply = tokio::time::timeout(
        Duration::from_secs(600),
        crate::support::send(up.addr, request),
    )
    .await
    .expect("an answer within 10 minutes");
    Answer {
        status: reply.status.as_u16(),
        content_type: reply.header("content-type").unwrap_or("").to_string(),
        body: reply.text(),
    }
}

async fn post_json(up: &Up, path: &str, body: &str) -> Answer {
    send(
        up,
        "POST",
        path,
        Some(("application/json", body.as_bytes().to_vec())),
    )
    .await
}

/// The contract every starter keeps (its README lists the routes): a page with the `GREETING`
/// preset, notes in `/tmp`, the bundled `motd.txt`, the `tidy` action, 404 and 405 as JSON.
async fn check_contract(app: &Path, up: &Up) {
    let page = send(up, "GET", "/", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(
        page.body.contains("Hi &lt;you&gt; &amp; co"),
        "the preset, escaped: {}",
        page.body
    );

    assert_eq!(send(up, "GET", "/api/notes", None).await.json(), json!([]));
    let first = post_json(up, "/api/notes", r#"{"text":"first"}"#).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json(), json!({"id": 1, "text": "first"}));
    // A body of 1 MiB arrives whole (streamed in many reads).
    let long = "é".repeat(512 * 1024);
    let second = post_json(up, "/api/notes", &json!({ "text": long }).to_string()).await;
    assert_eq!(second.status, 201);
    assert_eq!(second.json(), json!({"id": 2, "text": long}));
    for bad in ["not json", r#"{"text": 3}"#, r#"{"note": "x"}"#] {
        let refused = post_json(up, "/api/notes", bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        assert!(refused.json()["error"].is_string(), "{}", refused.body);
    }
    let notes = send(up, "GET", "/api/notes", None).await.json();
    assert_eq!(
        notes,
        json!([{"id": 1, "text": "first"}, {"id": 2, "text": long}])
    );
    // Kept in the Micro's own /tmp on the host.
    let kept: Value =
        serde_json::from_slice(&std::fs::read(app.join(".micros/tmp/main/notes.json")).unwrap())
            .unwrap();
    assert_eq!(kept, notes);

    let about = send(up, "GET", "/api/about", None).await;
    assert_eq!(about.status, 200, "{}", about.body);
    assert_eq!(
        about.json(),
        json!({"micro": "main", "version": "0.1.0", "motd": "Welcome to your new Micro."})
    );

    let missing = send(up, "GET", "/nowhere", None).await;
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"error": "not found"}))
    );
    let wrong = send(up, "DELETE", "/api/about", None).await;
    assert_eq!(
        (wrong.status, wrong.json()),
        (405, json!({"error": "method not allowed"}))
    );

    // The action, delivered by the runtime as its documented POST (clients cannot send it).
    assert_eq!(post_json(up, "/__space/v0/actions", "{}").await.status, 404);
    let triggered = tokio::process::Command::new(MICROS)
        .args(["trigger", app.to_str().unwrap(), "tidy"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&triggered.stdout);
    assert!(
        triggered.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&triggered.stderr)
    );
    let (head, body) = stdout.split_once("body:\n").unwrap();
    assert!(head.starts_with("status: 200 OK"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"tidied": 2})
    );
    assert_eq!(send(up, "GET", "/api/notes", None).await.json(), json!([]));
}

/// Every request meets a fresh interpreter: module state, the environment and the heap as the
/// image left them, never as the last request did (the `fresh` guest's checks, for Python and
/// JavaScript), one request at a time and several at once.
async fn check_fresh(up: &Up, untouched: Value) {
    for _ in 0..5 {
        let answer = send(up, "GET", "/__test/fresh", None).await;
        assert_eq!((answer.status, answer.json()), (200, untouched.clone()));
    }
    let together =
        futures::future::join_all((0..8).map(|_| send(up, "GET", "/__test/fresh", None))).await;
    for answer in together {
        assert_eq!((answer.status, answer.json()), (200, untouched.clone()));
    }
}

/// The memory and time limits, obeyed and violated, on a starter with the limit routes added.
async fn check_limits(up: &Up) {
    let fits = send(up, "GET", "/__test/hog?mb=64", None).await;
    assert_eq!(fits.status, 200, "{}", fits.body);
    assert_eq!(fits.json(), json!({"held": 64 * 1024 * 1024}));
    // Past the 256 MiB the test sets, the growth fails: 500 (the language's runtime may turn
    // the failure into its own out-of-memory error, answered by the app, or trap).
    let over = send(up, "GET", "/__test/hog?mb=300", None).await;
    assert_eq!(over.status, 500, "{}", over.body);
    let spin = send(up, "GET", "/__test/spin", None).await;
    assert_eq!(spin.status, 504, "{}", spin.body);
    // And the Micro serves on.
    assert_eq!(send(up, "GET", "/api/notes", None).await.status, 200);
    // Wait for the access line, written after the execution: guest lines come before it.
    let log = crate::cli::log_until(up, |log| {
        log.lines()
            .any(|l| l.contains("micros::access") && l.contains("path=/__test/spin"))
    })
    .await;
    assert!(
        log.lines().any(|l| l.contains("path=/__test/spin")
            && l.contains("status=504 ")
            && l.contains("outcome=\"timeout\"")),
        "{log}"
    );
    // The guest's runtime recovered from the refused growth by itself; the log still says so.
    assert!(
        log.lines().any(|l| l.contains("/__test/hog")
            && l.contains("a memory growth was refused at the execution's limit")),
        "{log}"
    );
}

/// Serves a built starter the way the test checks it: the preset set, the limits small enough
/// to reach quickly; `extra` flags besides.
async fn serve(app: &Path, extra: &[&str]) -> Up {
    let mut args = vec![
        app.to_str().unwrap(),
        "--env",
        "GREETING=Hi <you> & co",
        "--memory-limit",
        "256MiB",
        "--timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    up(&args).await
}

/// Appends `lines` to the file at `path`, as a save in an editor would change it.
fn append(path: &Path, lines: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(lines);
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_starter_builds_and_keeps_the_contract() {
    require(
        "cargo",
        &["--version"],
        "https://rustup.rs (then `rustup target add wasm32-wasip2`)",
    );
    let (_parent, app) = new_and_build("rust", None).await;
    let up = serve(&app, &[]).await;
    check_contract(&app, &up).await;
    assert!(terminate(up).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn python_starter_builds_keeps_the_contract_and_the_limits() {
    require(
        "python3",
        &["-m", "venv", "--help"],
        "apt-get install -y python3 python3-venv",
    );
    let (_parent, app) = new_and_build("python", Some(("main/app.py", PYTHON_LIMIT_ROUTES))).await;
    let up = serve(&app, &["--watch"]).await;
    check_contract(&app, &up).await;
    check_limits(&up).await;
    check_fresh(&up, json!({"seen": 0, "env": null, "heap": 0})).await;

    // The dev loop with the real toolchain: a saved route is built and swapped in...
    let source = app.join("main/app.py");
    append(
        &source,
        "\n\n@app.get(\"/__test/edited\")\ndef edited(req):\n    return {\"edited\": True}\n",
    );
    let long = Duration::from_secs(600);
    logged_within(&up, "swapped in the rebuilt component", 1, long).await;
    let edited = send(&up, "GET", "/__test/edited", None).await;
    assert_eq!(
        (edited.status, edited.json()),
        (200, json!({"edited": true}))
    );
    // ...and a save that does not build says why and keeps the last good one serving.
    append(&source, "\nthis is not python(\n");
    logged_within(
        &up,
        "rebuild failed; still serving the previous version",
        1,
        long,
    )
    .await;
    assert_eq!(send(&up, "GET", "/__test/edited", None).await.status, 200);
    assert!(terminate(up).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn js_starter_builds_keeps_the_contract_and_the_limits() {
    require(
        "npm",
        &["--version"],
        "apt-get install -y nodejs npm (Node.js 20 or newer)",
    );
    let (_parent, app) = new_and_build("js", Some(("main/app.js", JS_LIMIT_ROUTES))).await;
    let up = serve(&app, &[]).await;
    check_contract(&app, &up).await;
    check_limits(&up).await;
    check_fresh(&up, json!({"seen": 0, "global": null})).await;
    for (path, message) in [
        ("/__test/throws", "thrown"),
        ("/__test/rejects", "rejected"),
    ] {
        let failed = send(&up, "GET", path, None).await;
        assert_eq!(failed.status, 500, "{path}: {}", failed.body);
        assert_eq!(failed.json(), json!({"error": "internal error"}), "{path}");
        // console.error's line (the engine writes an error as its source) reaches the log.
        let logged = format!("GET {path} failed: (new Error(\"{message}\"");
        crate::cli::log_until(&up, |log| log.contains(&logged)).await;
    }
    assert!(terminate(up).await.success());
}

/// `examples/flask`: an ordinary Flask app, unchanged, behind the Python starter's WSGI adapter.
#[tokio::test(flavor = "multi_thread")]
async fn flask_example_runs_unchanged() {
    require(
        "python3",
        &["-m", "venv", "--help"],
        "apt-get install -y python3 python3-venv",
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flask");
    build(&example).await;
    let state = tempfile::tempdir().unwrap();
    let up = up(&[
        example.to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
        "--env",
        "GREETING=Hi <there>",
    ])
    .await;

    let page = send(&up, "GET", "/", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(
        page.body.contains("<h1>Hi &lt;there&gt;</h1>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("action=\"/greet\""), "{}", page.body);

    let form = "application/x-www-form-urlencoded";
    let greeted = send(
        &up,
        "POST",
        "/greet",
        Some((form, b"name=Ada+%3Cb%3E".to_vec())),
    )
    .await;
    assert_eq!(
        (greeted.status, greeted.body.as_str()),
        (200, "<p>Hello, Ada &lt;b&gt;!</p>")
    );
    let empty = send(&up, "POST", "/greet", Some((form, b"name=".to_vec()))).await;
    assert_eq!(empty.status, 400);
    assert!(empty.body.contains("400 Bad Request"), "{}", empty.body);

    let hello = send(&up, "GET", "/hello/Bob%20X?shout=1", None).await;
    assert_eq!(hello.status, 200);
    assert_eq!(hello.json(), json!({"hello": "Bob X", "shout": true}));

    let echoed = post_json(&up, "/echo", r#"{"a":[1,2]}"#).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(
        echoed.json(),
        json!({"length": 11, "received": {"a": [1, 2]}})
    );
    let broken = post_json(&up, "/echo", "{bad").await;
    assert_eq!(broken.status, 400);
    // A body of 5 MiB, within the 5.5 MiB limit.
    let big = json!({ "text": "x".repeat(5 * 1024 * 1024 - 20) }).to_string();
    let echoed = post_json(&up, "/echo", &big).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.json()["length"], json!(big.len()));

    let item = send(&up, "GET", "/items/2", None).await;
    assert_eq!(item.json(), json!({"id": 2, "name": "kettle"}));
    for missing in ["/items/9", "/items/abc", "/nope"] {
        let answer = send(&up, "GET", missing, None).await;
        assert_eq!(answer.status, 404, "{missing}");
        assert_eq!(
            answer.json(),
            json!({"error": "not found", "path": missing})
        );
    }
    let wrong = send(&up, "DELETE", "/items/1", None).await;
    assert_eq!(wrong.status, 405);

    let env = send(&up, "GET", "/env", None).await;
    assert_eq!(
        env.json(),
        json!({"greeting": "Hi <there>", "micro": "app"})
    );

    let old = crate::support::send(
        up.addr,
        http::Request::get("/old")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(old.status, 302);
    assert_eq!(old.header("location"), Some("/"));

    let boom = send(&up, "GET", "/boom", None).await;
    assert_eq!(boom.status, 500);
    assert!(
        boom.body.contains("500 Internal Server Error"),
        "{}",
        boom.body
    );
    // The guest's stderr lines also name the path, and the traceback comes after the first of
    // them: wait for the access line, written once the execution has ended.
    let log = crate::cli::log_until(&up, |log| {
        log.lines()
            .any(|l| l.contains("micros::access") && l.contains("path=/boom"))
    })
    .await;
    assert!(
        log.contains("RuntimeError: an unhandled error: Flask answers 500"),
        "the traceback reaches the log:\n{log}"
    );
    assert!(terminate(up).await.success());
}
