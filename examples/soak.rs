//! Soak test: `micros up` on an app of benign and hostile Micros, driven by a mix of requests at
//! high concurrency for minutes; reports requests served, outcomes by kind, and the runtime's
//! resident memory over time, which must stay flat. Run it with `./benches/soak.sh`.
//!
//! Usage: `soak MICROS_BINARY [SECONDS] [CONCURRENCY]` (defaults: 180 s, 64 clients).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use micros_guests as guests;
use tokio::io::AsyncBufReadExt as _;

/// The two soak apps (an app has at most five Micros): `(name, component, path)`, the first of
/// each the primary.
const APPS: [&[(&str, &str, &str)]; 2] = [
    &[
        ("web", guests::HELLO, ""),
        ("echo", guests::ECHO, "/echo"),
        ("mem", guests::MEMHOG, "/mem"),
        ("spin", guests::SPIN, "/spin"),
        ("tmp", guests::TMPFILL, "/tmp"),
    ],
    &[
        ("web", guests::HELLO, ""),
        ("sleep", guests::SLEEPER, "/sleep"),
        ("handles", guests::HANDLES, "/handles"),
        ("panic", guests::PANIC, "/panic"),
        ("deep", guests::RECURSION, "/deep"),
    ],
];

/// The request mix: `(weight, app, kind, method, path)`; `{n}` becomes a number below 100.
const MIX: &[(u32, usize, &str, &str, &str)] = &[
    (40, 0, "hello", "GET", "/"),
    (10, 1, "hello (2nd app)", "GET", "/"),
    (10, 0, "echo 64 KiB", "POST", "/echo/"),
    (6, 0, "memory bomb", "GET", "/mem/?mib=600&step=1"),
    (3, 0, "cpu loop", "GET", "/spin/"),
    (
        8,
        0,
        "fill /tmp",
        "GET",
        "/tmp/fill?name=f{n}&bytes=2097152",
    ),
    (2, 0, "reserved path", "GET", "/__space/v0/actions"),
    (3, 1, "sleep past limit", "GET", "/sleep/?ms=5000"),
    (5, 1, "handle exhaustion", "GET", "/handles/"),
    (5, 1, "panic", "GET", "/panic/"),
    (5, 1, "stack overflow", "GET", "/deep/"),
    (
        3,
        1,
        "timeout mid-body",
        "GET",
        "/sleep/?ms=5000&after_head=1",
    ),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: soak MICROS_BINARY [SECONDS] [CONCURRENCY]"))?;
    let seconds: u64 = args.next().map_or(Ok(180), |s| s.parse())?;
    let concurrency: usize = args.next().map_or(Ok(64), |s| s.parse())?;

    let mut runtimes = Vec::new();
    for micros in APPS {
        runtimes.push(start(&binary, micros).await?);
    }
    let addrs: Vec<SocketAddr> = runtimes.iter().map(|r| r.addr).collect();
    let pids: Vec<u32> = runtimes.iter().map(|r| r.pid).collect();

    println!("soak: {seconds} s, {concurrency} clients, two runtimes: pids {pids:?} on {addrs:?}");
    let outcomes: Arc<Mutex<BTreeMap<(String, String), u64>>> = Default::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (outcomes, addrs) = (outcomes.clone(), addrs.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let (_, app, kind, method, path) = pick();
                    let path = path.replace("{n}", &rand::random_range(0..100u32).to_string());
                    let outcome = request(addrs[app], method, &path).await;
                    let mut outcomes = outcomes.lock().unwrap_or_else(|e| e.into_inner());
                    *outcomes.entry((kind.to_string(), outcome)).or_default() += 1;
                }
            })
        })
        .collect();

    let mut samples: Vec<Vec<(u64, f64)>> = vec![Vec::new(); pids.len()];
    let started = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (pid, samples) in pids.iter().zip(&mut samples) {
            match resident_mib(*pid) {
                Some(rss) => samples.push((started.elapsed().as_secs(), rss)),
                None => anyhow::bail!("micros (pid {pid}) is gone"),
            }
        }
    }
    for client in clients {
        client.await?;
    }
    let mut healthy = true;
    for addr in &addrs {
        healthy &= request(*addr, "GET", "/").await == "200";
    }
    let mut unexpected = Vec::new();
    for runtime in &runtimes {
        unexpected.extend(
            runtime
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
    }
    drop(runtimes);

    let outcomes = outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let total: u64 = outcomes.values().sum();
    println!(
        "\nrequests served: {total} ({:.0}/s)",
        total as f64 / seconds as f64
    );
    println!("\n{:<22} {:<14} {:>8}", "kind", "outcome", "count");
    for ((kind, outcome), count) in &outcomes {
        println!("{kind:<22} {outcome:<14} {count:>8}");
    }
    let mut flat = true;
    for (pid, samples) in pids.iter().zip(&samples) {
        let third = samples.len() / 3;
        let peak = |s: &[(u64, f64)]| s.iter().map(|(_, m)| *m).fold(0.0, f64::max);
        let (early, late) = (peak(&samples[..third]), peak(&samples[2 * third..]));
        println!("\nresident memory of micros pid {pid} (MiB):");
        for (second, mib) in samples.iter().step_by((samples.len() / 12).max(1)) {
            println!("  {second:>5} s  {mib:>8.1}");
        }
        println!(
            "peak {:.1} MiB; peak of the first third {early:.1}, of the last third {late:.1}",
            peak(samples)
        );
        // Flat: the last third grows no more than a fifth (plus allocator slack) over the first.
        flat &= late <= early * 1.2 + 32.0;
    }
    println!(
        "\nmemory {}; servers {} after the soak",
        if flat { "flat" } else { "GREW" },
        if healthy { "healthy" } else { "NOT ANSWERING" }
    );
    println!(
        "errors or panics logged by the runtimes: {}",
        unexpected.len()
    );
    for line in unexpected.iter().take(20) {
        println!("  {line}");
    }
    anyhow::ensure!(flat && healthy && unexpected.is_empty(), "the soak failed");
    Ok(())
}

/// A request kind drawn by weight.
fn pick() -> (u32, usize, &'static str, &'static str, &'static str) {
    let total: u32 = MIX.iter().map(|m| m.0).sum();
    let mut draw = rand::random_range(0..total);
    for entry in MIX {
        if draw < entry.0 {
            return *entry;
        }
        draw -= entry.0;
    }
    MIX[0]
}

/// One request on a new connection: its status, or how it failed (`cut` if the body broke off).
async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|_| "connect")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "handshake")?;
        tokio::spawn(connection);
        let body = if method == "POST" {
            Bytes::from(vec![b'x'; 64 * 1024])
        } else {
            Bytes::new()
        };
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "soak.test")
            .body(Full::new(body))
            .map_err(|_| "request")?;
        let response = sender.send_request(request).await.map_err(|_| "no head")?;
        let status = response.status().as_u16().to_string();
        match response.into_body().collect().await {
            Ok(_) => Ok::<_, &str>(status),
            Err(_) => Ok(format!("{status} cut")),
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => failure.to_string(),
        Err(_) => "client timeout".to_string(),
    }
}

/// Resident memory of a process in MiB (Linux).
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A running `micros up` of one soak app; killed when dropped.
struct Runtime {
    _app: tempfile::TempDir,
    _child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    /// What it logged above a warning.
    log: Arc<Mutex<Vec<String>>>,
}

/// Starts `micros up` on a soak app of these Micros and waits until it answers.
async fn start(binary: &str, micros: &[(&str, &str, &str)]) -> anyhow::Result<Runtime> {
    let app = write_app(micros)?;
    let mut child = tokio::process::Command::new(binary)
        .arg("up")
        .arg(app.path())
        .args(["--listen", "127.0.0.1:0", "--timeout", "2s", "--no-auth"])
        .args(["--memory-limit", "64MiB", "--tmp-limit", "64MiB"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("micros exited at once"))?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let addr: SocketAddr = first
        .strip_prefix("micros listening on http://")
        .ok_or_else(|| anyhow::anyhow!("unexpected first line: {first}"))?
        .parse()?;
    // Warnings name every failed execution (most of the mix fails on purpose); errors and
    // panics of the runtime itself must not happen.
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(" ERROR ") || line.contains("panicked at") {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        }
    });
    let ready = Instant::now() + Duration::from_secs(120);
    while request(addr, "GET", "/").await != "200" {
        anyhow::ensure!(Instant::now() < ready, "the app did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Runtime {
        _app: app,
        _child: child,
        pid,
        addr,
        log,
    })
}

/// A soak app in a temporary folder: these Micros with their components.
fn write_app(micros: &[(&str, &str, &str)]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let mut toml = String::from("v = 1\napp_name = \"soak\"\n");
    for (i, (name, component, path)) in micros.iter().enumerate() {
        let src = dir.path().join(name);
        std::fs::create_dir_all(&src)?;
        std::fs::copy(component, src.join("micro.wasm"))?;
        toml.push_str(&format!(
            "\n[[micros]]\nname = \"{name}\"\nsrc = \"{name}\"\ncomponent = \"micro.wasm\"\n"
        ));
        if i == 0 {
            toml.push_str("primary = true\n");
        } else {
            toml.push_str(&format!("path = \"{path}\"\n"));
        }
    }
    std::fs::write(dir.path().join("Spacefile.toml"), toml)?;
    Ok(dir)
}
