//! `micros up --watch`: a changed source rebuilds its Micro and swaps it in; requests in flight
//! finish on the old component; a failed build or an unusable component keeps the old one.

use std::time::Duration;

use micros::DEFAULT_SETTLE;
use micros_guests as guests;

use crate::cli::{Up, terminate, up};

/// An app whose one Micro "builds" by copying `../<which.txt>.wasm` to `app.wasm`: each build is
/// instant and produces a real component (or a real failure), so the test is about the watch.
fn app(first: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guests::SLEEPER, dir.path().join("sleeper.wasm")).unwrap();
    std::fs::copy(guests::HELLO, dir.path().join("hello.wasm")).unwrap();
    std::fs::write(dir.path().join("text.wasm"), "not a component").unwrap();
    std::fs::create_dir(dir.path().join("main")).unwrap();
    std::fs::write(dir.path().join("main/which.txt"), first).unwrap();
    std::fs::write(
        dir.path().join("Spacefile.toml"),
        r#"v = 1
[[micros]]
name = "main"
src = "main"
component = "app.wasm"
public = true
commands = ['cp "../$(cat which.txt).wasm" app.wasm']
"#,
    )
    .unwrap();
    dir
}

/// The log lines so far that contain `text`.
fn lines_with(up: &Up, text: &str) -> Vec<String> {
    up.stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(text))
        .cloned()
        .collect()
}

/// Waits (up to 30 s) until the log has `count` lines containing `text`; returns the last.
async fn logged(up: &Up, text: &str, count: usize) -> String {
    logged_within(up, text, count, Duration::from_secs(30)).await
}

/// Waits up to `limit` until the log has `count` lines containing `text`; returns the last.
pub(crate) async fn logged_within(up: &Up, text: &str, count: usize, limit: Duration) -> String {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        let lines = lines_with(up, text);
        if lines.len() >= count {
            return lines[count - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {count} line(s) with `{text}` in:\n{}",
        up.stderr.lock().unwrap().join("\n")
    );
}

/// `GET path`: status and body.
async fn get(up: &Up, path: &str) -> (u16, String) {
    let reply = crate::cli::get(up.addr, path).await;
    (reply.status.as_u16(), reply.text())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_swaps_in_a_rebuilt_micro_and_in_flight_requests_finish_on_the_old() {
    let dir = app("sleeper");
    let which = dir.path().join("main/which.txt");
    let up = up(&[dir.path().to_str().unwrap(), "--watch"]).await;
    assert_eq!(get(&up, "/?ms=10").await, (200, "slept 10 ms\n".into()));

    // A request that started on the old component...
    let addr = up.addr;
    let in_flight = tokio::spawn(async move {
        let reply = crate::cli::get(addr, "/?ms=3000").await;
        (reply.status.as_u16(), reply.text())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while a save rebuilds and swaps the Micro.
    std::fs::write(&which, "hello").unwrap();
    logged(&up, "swapped in the rebuilt component", 1).await;
    assert_eq!(get(&up, "/").await, (200, "hello from micros\n".into()));
    assert_eq!(
        in_flight.await.unwrap(),
        (200, "slept 3000 ms\n".into()),
        "the request in flight finishes on the component it started with"
    );

    // A build command that fails: the log says which and why, the old component serves on.
    std::fs::write(&which, "missing").unwrap();
    let failed = logged(&up, "rebuild failed; still serving the previous version", 1).await;
    assert!(
        failed.contains("build command `cp \"../$(cat which.txt).wasm\" app.wasm` failed"),
        "{failed}"
    );
    assert_eq!(get(&up, "/").await, (200, "hello from micros\n".into()));

    // A build that succeeds but leaves something that is not a component: the same.
    std::fs::write(&which, "text").unwrap();
    let refused = logged(
        &up,
        "the rebuilt component cannot be served; still serving the previous version",
        1,
    )
    .await;
    assert!(
        refused.contains("app.wasm` is not a WebAssembly component"),
        "{refused}"
    );
    assert_eq!(get(&up, "/").await, (200, "hello from micros\n".into()));

    // Fixed again: swapped in again.
    std::fs::write(&which, "sleeper").unwrap();
    logged(&up, "swapped in the rebuilt component", 2).await;
    assert_eq!(get(&up, "/?ms=1").await, (200, "slept 1 ms\n".into()));
    // The compile cache keeps the current component's artifact only, not one per rebuild.
    let cached: Vec<_> = std::fs::read_dir(dir.path().join(".micros/cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(terminate(up).await.success());
}

/// Build outputs, hidden files and backup files are not sources: changing them builds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn watch_ignores_build_outputs_and_hidden_files() {
    let dir = app("hello");
    let main = dir.path().join("main");
    let up = up(&[dir.path().to_str().unwrap(), "--watch"]).await;
    assert_eq!(get(&up, "/").await.0, 200);
    std::fs::create_dir_all(main.join("target/debug")).unwrap();
    std::fs::write(main.join("target/debug/out.txt"), "x").unwrap();
    std::fs::write(main.join(".which.txt.swp"), "x").unwrap();
    std::fs::write(main.join("which.txt~"), "x").unwrap();
    std::fs::create_dir(main.join("node_modules")).unwrap();
    std::fs::write(main.join("node_modules/m.js"), "x").unwrap();
    // The component itself is the build's output.
    std::fs::copy(dir.path().join("hello.wasm"), main.join("app.wasm")).unwrap();
    // A source in a folder made after the watch started is watched.
    std::fs::create_dir(main.join("lib")).unwrap();
    // Longer than the settle time, so that a rebuild these changes started would be logged.
    tokio::time::sleep(DEFAULT_SETTLE * 4).await;
    assert_eq!(lines_with(&up, "a source changed").len(), 0);
    std::fs::write(main.join("lib/new.txt"), "x").unwrap();
    logged(&up, "swapped in the rebuilt component", 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        lines_with(&up, "a source changed").len(),
        1,
        "one rebuild for the new source, none for its own output"
    );
    assert!(terminate(up).await.success());
}
