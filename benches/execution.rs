//! The per-execution cost, in process: one fresh store, instantiation and call of the hello guest,
//! against the same request answered without a sandbox as a baseline in the same run.

use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("web");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::copy(micros_guests::HELLO, src.join("hello.wasm")).expect("copy hello");
    std::fs::write(
        dir.path().join("Spacefile.toml"),
        "v = 1\n[[micros]]\nname = \"web\"\nsrc = \"web\"\ncomponent = \"hello.wasm\"\npublic = true\n",
    )
    .expect("manifest");
    let load = |pooling: bool| {
        let manifest = micros::Manifest::load(dir.path()).expect("manifest");
        let config = micros::Config {
            pooling,
            state_dir: Some(
                dir.path()
                    .join(if pooling { "pooled" } else { "on-demand" }),
            ),
            ..micros::Config::default()
        };
        micros::App::load(manifest, &config).expect("app")
    };
    let app = load(true);
    let on_demand = load(false);
    let request = || {
        http::Request::get("/")
            .header("host", "bench")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    // The baseline, measured in the same run: the same request answered natively, no sandbox.
    c.bench_function("baseline: native hello", |b| {
        b.to_async(&runtime).iter(|| async {
            let request = request();
            let response = http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"hello from micros\n"),
            ));
            std::hint::black_box(request);
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
        })
    });
    c.bench_function("hello: new store + instantiate + call + body", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = app.handle(request()).await;
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
        })
    });
    c.bench_function(
        "hello, pooling off: the same, memory allocated per request",
        |b| {
            b.to_async(&runtime).iter(|| async {
                let response = on_demand.handle(request()).await;
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .expect("body")
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
