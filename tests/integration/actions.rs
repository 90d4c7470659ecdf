//! Scheduled actions end to end: `micros trigger`, `micros actions`, the reserved namespace, and
//! an action firing by itself under `micros up`.

use std::time::Duration;

use micros_guests as guests;

use crate::cli::{run, up};
use crate::support::{micro, serve, write_app};

const TIDY: &str = "[[micros.actions]]\nid = \"tidy\"\nname = \"Tidy\"\ntrigger = \"schedule\"\ndefault_interval = \"1 hour\"";

fn action(id: &str, interval: &str) -> String {
    format!(
        "[[micros.actions]]\nid = \"{id}\"\nname = \"{id}\"\ntrigger = \"schedule\"\ndefault_interval = \"{interval}\""
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_delivers_the_documented_request() {
    let (dir, _) = write_app(&[
        micro("web", guests::RECORDER).primary().toml(TIDY),
        micro("api", guests::RECORDER)
            .path("/api")
            .toml(&action("sync", "0/15 * * * *")),
    ]);
    // A serving instance's /tmp survives a one-off trigger.
    std::fs::create_dir_all(dir.path().join(".micros/tmp/web")).unwrap();
    std::fs::write(dir.path().join(".micros/tmp/web/kept.txt"), "kept").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_micros"))
        .args(["trigger", dir.path().to_str().unwrap(), "sync"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (head, body) = stdout.split_once("body:\n").unwrap();
    assert!(head.starts_with("status: 200 OK\nduration: "), "{head}");
    assert!(head.ends_with(" ms\n"), "{head}");
    let event = r#"{"event":{"id":"sync","trigger":"schedule"}}"#;
    let expected = format!(
        "Method::Post /__space/v0/actions\nauthority: 127.0.0.1:4200\ncontent-length: {}\ncontent-type: application/json\n\n{event}\n\n",
        event.len()
    );
    assert_eq!(body, expected);
    // Delivered to the Micro that declares it, which logged it in its own /tmp.
    let log = std::fs::read_to_string(dir.path().join(".micros/tmp/api/received.log")).unwrap();
    assert_eq!(format!("{log}\n"), expected);
    assert!(!dir.path().join(".micros/tmp/web/received.log").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".micros/tmp/web/kept.txt")).unwrap(),
        "kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_reports_a_failing_or_timing_out_action() {
    let (dir, _) = write_app(&[
        micro("web", guests::PANIC)
            .primary()
            .toml(&action("boom", "1 hour")),
        micro("spin", guests::SPIN).toml(&action("forever", "1 hour")),
        micro("rec", guests::RECORDER).toml(&action("fine", "1 hour")),
    ]);
    let app = dir.path().to_str().unwrap();
    let (code, stderr) = run(&["trigger", app, "boom"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("action failed: the guest trapped"),
        "{stderr}"
    );
    assert!(stderr.contains("action=boom"), "{stderr}");
    assert!(
        stderr.contains("error: action `boom` failed: the guest trapped"),
        "{stderr}"
    );

    let (code, stderr) = run(&["trigger", app, "forever", "--timeout", "1s"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with("error: action `forever` failed: execution time limit of 1s exceeded\n"),
        "{stderr}"
    );

    let (code, stderr) = run(&["trigger", app, "nope"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: the app has no action `nope` (its actions: boom, forever, fine)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_outside_reaches_the_runtime_namespace() {
    let server = serve(&[
        micro("web", guests::RECORDER).primary(),
        micro("api", guests::RECORDER).path("/api"),
    ])
    .await;
    for path in [
        "/__space/v0/actions",
        "/%5F%5Fspace/v0/actions",
        "//__space/v0/actions",
        "/api/%5f%5fspace/v0/actions",
        "/x/../__space/v0/actions",
        "/__space",
        "/__space/",
        "/api/__space/v0/actions",
        "/api/__space",
    ] {
        let reply = server
            .post(path, r#"{"event":{"id":"tidy","trigger":"schedule"}}"#)
            .await;
        let micro = if path.starts_with("/api") {
            "api"
        } else {
            "web"
        };
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.text(),
            format!("micro `{micro}`: not found: `/__space/` belongs to the runtime\n"),
            "{path}"
        );
    }
    for micro in ["web", "api"] {
        assert!(
            !server.tmp_dir(micro).join("received.log").exists(),
            "micro `{micro}` saw a request"
        );
    }
    // Only the namespace itself is reserved.
    assert_eq!(server.get("/__spaceship").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_lists_schedules_and_overrides() {
    let (dir, _) = write_app(&[
        micro("web", guests::RECORDER).primary().toml(TIDY),
        micro("api", guests::RECORDER).toml(&action("sync", "0 9 * * 1")),
    ]);
    let app = dir.path().to_str().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_micros"))
        .args(["actions", app, "--action", "tidy=off"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "MICRO  ACTION  SCHEDULE   NEXT RUN (UTC)");
    assert_eq!(lines[1], "web    tidy    off        -");
    assert!(
        lines[2].starts_with("api    sync    0 9 * * 1  "),
        "{}",
        lines[2]
    );
    let next = chrono::NaiveDateTime::parse_from_str(&lines[2][24..], "%Y-%m-%d %H:%M").unwrap();
    assert_eq!(chrono::Datelike::weekday(&next), chrono::Weekday::Mon);
    assert_eq!(next.format("%H:%M").to_string(), "09:00");

    let (code, stderr) = run(&["actions", app, "--action", "nope=off"]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (
            1,
            "error: --action nope: the app has no action `nope` (its actions: tidy, sync)\n"
        )
    );
    let (code, stderr) = run(&["actions", app, "--action", "tidy=every day"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`every day`: a rate needs a whole number"),
        "{stderr}"
    );
}

/// Waits for the next minute to come round, so this test takes up to a minute and a bit.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_minute_action_fires_by_itself_under_up() {
    let (dir, _) = write_app(&[micro("web", guests::RECORDER)
        .primary()
        .toml(&action("tick", "1 minute"))
        .toml(&action("never", "1 minute"))]);
    let up = up(&[
        dir.path().to_str().unwrap(),
        "--action",
        "never=off",
        "--admin",
        "127.0.0.1:0",
    ])
    .await;
    let log = dir.path().join(".micros/tmp/web/received.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(80);
    while !log.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the action did not fire within 80 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = std::fs::read_to_string(&log).unwrap();
    assert!(
        received.starts_with("Method::Post /__space/v0/actions\n"),
        "{received}"
    );
    assert!(
        received.contains(r#"{"event":{"id":"tick","trigger":"schedule"}}"#),
        "{received}"
    );
    assert!(
        !received.contains("never"),
        "an action turned off fired: {received}"
    );
    let stderr = crate::cli::log_until(&up, |stderr| stderr.contains("action succeeded")).await;
    assert!(
        stderr.contains("action scheduled") && stderr.contains("next_run="),
        "{stderr}"
    );
    assert!(stderr.contains("action succeeded"), "{stderr}");
    // The run is counted by outcome in the metrics.
    let metrics = crate::cli::scrape(&up).await;
    assert!(
        metrics.contains("micros_action_runs_total{micro=\"web\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(crate::cli::terminate(up).await.success());
}
