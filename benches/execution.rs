//! The per-execution cost, in process: a fresh store, instantiation and call of a guest for
//! each request (hello, echo of 64 KiB, a 4 MiB write to `/tmp`), against the same request
//! answered without a sandbox as a baseline in the same run, and hello served by wasmtime alone
//! (what `wasmtime serve` does per request) as a second. Built with `--features bench-unlimited`,
//! each is also measured with the limits' machinery switched off, which is what the limits cost.
//! After criterion: the limits, logging, and micros against wasmtime alone tuned alike, each in
//! alternating rounds.

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt as _, Full};

/// The allocator `micros` is served with, so that the figures are those of the binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes the echo benchmark sends and receives.
const ECHO_BYTES: usize = 64 * 1024;
/// Bytes the `/tmp` benchmark writes.
const TMP_BYTES: usize = 4 * 1024 * 1024;

/// An app of one public Micro running `component`, loaded under `config` (its state folder
/// inside `dir`, named `state`).
fn app(dir: &std::path::Path, component: &str, state: &str, config: micros::Config) -> micros::App {
    let app_dir = dir.join(state);
    let src = app_dir.join("web");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::copy(component, src.join("guest.wasm")).expect("copy guest");
    std::fs::write(
        app_dir.join("Spacefile.toml"),
        "v = 1\n[[micros]]\nname = \"web\"\nsrc = \"web\"\ncomponent = \"guest.wasm\"\npublic = true\n",
    )
    .expect("manifest");
    let manifest = micros::Manifest::load(&app_dir).expect("manifest");
    let config = micros::Config {
        state_dir: Some(app_dir.join("state")),
        ..config
    };
    micros::App::load(manifest, &config).expect("app")
}

/// A request with `body` to `uri`.
fn request(uri: &str, body: Bytes) -> http::Request<Full<Bytes>> {
    http::Request::post(uri)
        .header("host", "bench")
        .header("content-length", body.len())
        .body(Full::new(body))
        .expect("request")
}

/// A component served by wasmtime and its WASI crates alone, as `wasmtime serve` serves it.
struct WasmtimeAlone {
    pre: wasmtime_wasi_http::p2::bindings::ProxyPre<Bare>,
}

/// The store data of [`WasmtimeAlone`]: what `wasi:http` needs, nothing more.
struct Bare {
    table: wasmtime::component::ResourceTable,
    wasi: wasmtime_wasi::WasiCtx,
    http: wasmtime_wasi_http::WasiHttpCtx,
    outbound: NoOutbound,
}

impl wasmtime_wasi::WasiView for Bare {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for Bare {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The outgoing HTTP of [`Bare`]: none (the benched guests send no requests). micros builds
/// wasi-http without its default sender, so wasmtime's stock hooks are not there to borrow.
struct NoOutbound;

impl wasmtime_wasi_http::WasiHttpHooks for NoOutbound {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl WasmtimeAlone {
    /// With wasmtime's defaults and the pooling allocator, as `wasmtime serve` runs.
    fn new(component: &str) -> Self {
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
        Self::with(config, component)
    }

    /// With the pool as micros sizes and tunes it (src/engine.rs, default limits): what is left
    /// between the two is micros' own work per request.
    fn tuned(component: &str) -> Self {
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(1024)
            .total_stacks(1024)
            .total_core_instances(8 * 1024)
            .total_memories(2 * 1024)
            .total_tables(2 * 1024)
            .max_memory_size(512 << 20)
            .max_component_instance_size(8 << 20)
            .max_core_instance_size(2 << 20)
            .table_keep_resident(128 << 10);
        if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(4 << 20)
                .decommit_batch_size(1);
        } else {
            pool.linear_memory_keep_resident(128 << 10)
                .decommit_batch_size(64);
        }
        let mut config = wasmtime::Config::new();
        config
            .memory_reservation(512 << 20)
            .memory_guard_size(32 << 20)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        Self::with(config, component)
    }

    fn with(config: wasmtime::Config, component: &str) -> Self {
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let component =
            wasmtime::component::Component::from_file(&engine, component).expect("component");
        let mut linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("wasi:http");
        let pre = linker.instantiate_pre(&component).expect("pre");
        Self {
            pre: wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).expect("proxy"),
        }
    }

    /// One request in a fresh store; the whole body read.
    async fn handle(&self, request: http::Request<Full<Bytes>>) -> Bytes {
        use wasmtime_wasi_http::WasiHttpView as _;
        let mut store = wasmtime::Store::new(
            self.pre.engine(),
            Bare {
                table: wasmtime::component::ResourceTable::new(),
                wasi: wasmtime_wasi::WasiCtx::builder().build(),
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                outbound: NoOutbound,
            },
        );
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(
                wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
                request.map(|body| {
                    body.map_err(
                        |never| -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
                            match never {}
                        },
                    )
                }),
            )
            .expect("request");
        let out = http.new_response_outparam(sender).expect("outparam");
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
            .expect("handle");
        let response = receiver.await.expect("head").expect("response");
        read_all(response.into_body()).await
    }
}

/// The variants every workload is measured in: limits on (as served), pooling off, and (in a
/// `bench-unlimited` build) limits off.
fn variants() -> Vec<(&'static str, micros::Config)> {
    let served = ("", micros::Config::default());
    let on_demand = (
        ", pooling off",
        micros::Config {
            pooling: false,
            ..micros::Config::default()
        },
    );
    #[cfg(feature = "bench-unlimited")]
    return vec![
        served,
        on_demand,
        (
            ", limits off",
            micros::Config {
                unlimited: true,
                ..micros::Config::default()
            },
        ),
    ];
    #[cfg(not(feature = "bench-unlimited"))]
    vec![served, on_demand]
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let echo_body = Bytes::from(vec![b'e'; ECHO_BYTES]);
    let tmp_uri = format!("/fill?name=bench&bytes={TMP_BYTES}");

    // The baseline, measured in the same run: the same request answered natively, no sandbox.
    c.bench_function("baseline: native hello", |b| {
        b.to_async(&runtime).iter(|| async {
            std::hint::black_box(request("/", Bytes::new()));
            let response =
                http::Response::new(Full::new(Bytes::from_static(b"hello from micros\n")));
            response.into_body().collect().await.expect("body")
        })
    });

    // The second baseline: wasmtime alone, as `wasmtime serve` uses it (its defaults, the pooling
    // allocator, a WASI context and a fresh store per request, no limits, no router, no log).
    // What micros adds to a request is the difference.
    let alone = WasmtimeAlone::new(micros_guests::HELLO);
    let first = runtime.block_on(alone.handle(request("/", Bytes::new())));
    assert_eq!(first, "hello from micros\n");
    c.bench_function("baseline: wasmtime alone, hello", |b| {
        b.to_async(&runtime)
            .iter(|| alone.handle(request("/", Bytes::new())))
    });

    let workloads: [(&str, &str, &str, &Bytes); 3] = [
        ("hello", micros_guests::HELLO, "/", &Bytes::new()),
        ("echo 64 KiB", micros_guests::ECHO, "/", &echo_body),
        (
            "/tmp write 4 MiB",
            micros_guests::TMPFILL,
            &tmp_uri,
            &Bytes::new(),
        ),
    ];
    for (index, (workload, component, uri, body)) in workloads.into_iter().enumerate() {
        for (variant, config) in variants() {
            let state = format!("{index}{}", variant.replace([' ', ','], ""));
            let app = app(dir.path(), component, &state, config);
            // One run outside the clock, which also proves the workload answers as it should.
            let first = runtime.block_on(async {
                let response = app.handle(request(uri, body.clone())).await;
                assert_eq!(response.status(), 200, "{workload}{variant}");
                read_all(response.into_body()).await
            });
            match workload {
                "echo 64 KiB" => assert_eq!(first.len(), ECHO_BYTES),
                "/tmp write 4 MiB" => {
                    assert_eq!(first, format!("wrote {TMP_BYTES}: ok").as_bytes())
                }
                _ => {}
            }
            c.bench_function(&format!("{workload}{variant}"), |b| {
                b.to_async(&runtime).iter(|| async {
                    let response = app.handle(request(uri, body.clone())).await;
                    response.into_body().collect().await.expect("body")
                })
            });
        }
    }
}

/// What the limits cost: each workload with its limits on against off, in alternating rounds
/// (`alternate`). Criterion's figures above measure one variant after the other, so a slow
/// phase of the machine (disk writeback under the `/tmp` workload) lands on one of them only.
#[cfg(feature = "bench-unlimited")]
fn limits_cost() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let echo_body = Bytes::from(vec![b'e'; ECHO_BYTES]);
    let tmp_uri = format!("/fill?name=bench&bytes={TMP_BYTES}");
    let workloads: [(&str, &str, &str, &Bytes, u32); 3] = [
        ("hello", micros_guests::HELLO, "/", &Bytes::new(), 2000),
        ("echo 64 KiB", micros_guests::ECHO, "/", &echo_body, 400),
        (
            "/tmp write 4 MiB",
            micros_guests::TMPFILL,
            &tmp_uri,
            &Bytes::new(),
            40,
        ),
    ];
    println!("\nwhat the limits cost (median of {ROUNDS} alternating rounds):");
    for (index, (workload, component, uri, body, requests)) in workloads.into_iter().enumerate() {
        let on = app(
            dir.path(),
            component,
            &format!("on{index}"),
            micros::Config::default(),
        );
        let off = app(
            dir.path(),
            component,
            &format!("off{index}"),
            micros::Config {
                unlimited: true,
                ..micros::Config::default()
            },
        );
        let time = |app: &micros::App| {
            per_request(&runtime, requests, || async {
                let response = app.handle(request(uri, body.clone())).await;
                let status = response.status();
                let body = read_all(response.into_body()).await;
                assert_eq!(status, 200, "{workload}: {body:?}");
            })
        };
        let (wall, cpu) = alternate(|| time(&on), || time(&off));
        println!("  {workload:<18} limits on / off: {}", ratios(wall, cpu));
    }
}

/// Wall time and process CPU time (every thread: blocking file writes run on threads of their
/// own) per request of `requests` made one after the other by `one`, on `runtime`.
fn per_request<F: std::future::Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    requests: u32,
    mut one: impl FnMut() -> F,
) -> (f64, f64) {
    let (started, cpu) = (std::time::Instant::now(), cpu_seconds());
    runtime.block_on(async {
        for _ in 0..requests {
            one().await;
        }
    });
    let n = f64::from(requests);
    (
        started.elapsed().as_secs_f64() / n,
        (cpu_seconds() - cpu) / n,
    )
}

/// Answers hello through `app`, checking the status, and reads the whole body.
async fn hello(app: &micros::App) {
    let response = app.handle(request("/", Bytes::new())).await;
    assert_eq!(response.status(), 200);
    read_all(response.into_body()).await;
}

/// The whole of a response body.
async fn read_all<B: http_body::Body>(body: B) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    body.collect().await.expect("body").to_bytes()
}

/// CPU seconds (user and system, all threads) this process has used.
#[expect(
    unsafe_code,
    reason = "getrusage is the one way to read a process's CPU time"
)]
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Rounds of an alternating comparison; each gives one ratio.
const ROUNDS: usize = 21;

/// The medians of `ROUNDS` ratios of `a` to `b` (wall time, CPU time), measured in rounds that
/// alternate between the two (the order flipping every round), so that a slow phase of the
/// machine lands on both. Each closure runs a batch and returns its (wall, CPU) per request.
fn alternate(mut a: impl FnMut() -> (f64, f64), mut b: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    a();
    b();
    let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = (0..ROUNDS)
        .map(|round| {
            let (a, b) = if round % 2 == 0 {
                (a(), b())
            } else {
                let b = b();
                (a(), b)
            };
            (a.0 / b.0, a.1 / b.1)
        })
        .unzip();
    let median = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        ratios[ROUNDS / 2]
    };
    (median(&mut wall), median(&mut cpu))
}

/// The ratios `alternate` found, as printed: CPU time first.
fn ratios(wall: f64, cpu: f64) -> String {
    format!(
        "CPU {cpu:.3} ({:+.1}%), wall time {wall:.3} ({:+.1}%)",
        (cpu - 1.0) * 100.0,
        (wall - 1.0) * 100.0,
    )
}

/// What logging costs, in process: hello answered with the binary's log subscriber (text,
/// `info`, to a file, so the request span and the access line are made and written) against
/// none, in alternating rounds.
fn logging_cost() {
    const REQUESTS: u32 = 2000;
    // One thread: the subscriber is set for this thread only, and a hello's execution and its
    // access line run on the caller's task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let app = app(
        dir.path(),
        micros_guests::HELLO,
        "logging",
        micros::Config::default(),
    );
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let logs = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(log))
            .with_ansi(false)
            .finish(),
    );
    let time = || per_request(&runtime, REQUESTS, || hello(&app));
    let (wall, cpu) = alternate(|| tracing::dispatcher::with_default(&logs, time), time);
    let lines = std::fs::read_to_string(dir.path().join("log")).expect("log");
    assert!(
        lines.contains("micros::access"),
        "no access line in:\n{lines}"
    );
    println!(
        "\nwhat logging costs (hello, median of {ROUNDS} alternating rounds): {}",
        ratios(wall, cpu)
    );
}

/// What micros adds to wasmtime: hello answered by micros (limits, router, access record, no
/// log subscriber) against wasmtime alone tuned the same way ([`WasmtimeAlone::tuned`]), in
/// alternating rounds.
fn overhead() {
    const REQUESTS: u32 = 2000;
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let app = app(
        dir.path(),
        micros_guests::HELLO,
        "overhead",
        micros::Config::default(),
    );
    let alone = WasmtimeAlone::tuned(micros_guests::HELLO);
    let time_micros = || per_request(&runtime, REQUESTS, || hello(&app));
    let time_alone = || {
        per_request(&runtime, REQUESTS, || async {
            alone.handle(request("/", Bytes::new())).await;
        })
    };
    let (wall, cpu) = alternate(time_micros, time_alone);
    println!(
        "\nmicros against wasmtime alone tuned alike (hello, median of {ROUNDS} alternating rounds): {}",
        ratios(wall, cpu)
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // Not when the benchmarks only run once to be tested (`cargo test --benches`), are listed,
    // or run under a profiler (`--profile-time`), whose profile should hold the chosen ones only.
    if !std::env::args().any(|a| a == "--test" || a == "--list" || a == "--profile-time") {
        #[cfg(feature = "bench-unlimited")]
        limits_cost();
        logging_cost();
        overhead();
    }
    Criterion::default().configure_from_args().final_summary();
}
