//! Embedding micros in your own server: load an app, pick the limits, serve it until Ctrl-C.
//!
//! `cargo run --example embed -- examples/demo` (build the demo first: `cargo run -- build examples/demo`).

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/demo".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = micros::Config {
        address: listener.local_addr()?,
        // The operator's limits: here a tighter time limit than Space's 20 s.
        limits: micros::Limits {
            execution_time: Duration::from_secs(5),
            ..micros::Limits::default()
        },
        ..micros::Config::default()
    };
    let manifest = micros::Manifest::load(&app_dir)?;
    // Private routes need the owner token: make one on the first start and show it once.
    let state = micros::state::StateDir::open(config.state_dir_for(&manifest))?;
    if let Some(token) = micros::Credentials::open(&state).ensure_owner_token()? {
        eprintln!("owner token (shown once): {token}");
    }
    let app = micros::App::load(manifest, &config)?;
    eprintln!("serving {app_dir} on http://{}", config.address);
    micros::serve(app, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
