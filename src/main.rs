//! The `micros` command: a thin CLI over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use micros::{ActionOverride, App, Config, EnvSetting, Limits, Manifest};

/// Run small server apps (Micros) as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "micros", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The format of log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an app.
    Up(Box<Up>),
    /// Validate the manifest and compile every component.
    Check {
        /// An app folder holding `Spacefile.toml`, or the file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
        #[command(flatten)]
        compile: CompileArgs,
        /// The state folder whose compile cache is filled (default: `.micros/` beside the
        /// manifest).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run each Micro's build `commands`.
    Build {
        /// An app folder holding `Spacefile.toml`, or the file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Run one scheduled action once, now: prints the status, the body and the duration.
    #[command(override_usage = "micros trigger [OPTIONS] [PATH] <ACTION_ID>")]
    Trigger(Trigger),
    /// Show whether the app has an owner token, or replace it (`--rotate`) and print the new one.
    OwnerToken {
        /// An app folder holding `Spacefile.toml`, or the file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Make a new owner token; the old one and every login cookie stop working at once.
        #[arg(long)]
        rotate: bool,
        /// Where keys and /tmp folders live (default: `.micros/` beside the manifest).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Create, list and revoke app keys (`X-Space-App-Key`, for Micros with `presets.api_keys`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List every scheduled action: Micro, id, schedule, next run (UTC).
    Actions {
        /// An app folder holding `Spacefile.toml`, or the file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Override an action's schedule, or turn it off: `ID=INTERVAL` or `ID=off`.
        #[arg(long = "action", value_name = "ID=INTERVAL|ID=off")]
        actions: Vec<ActionOverride>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an app key and print it (the only time it is shown).
    Create {
        /// The key's name: lowercase letters, digits, `-` and `_`.
        name: String,
        #[command(flatten)]
        app: AppArgs,
    },
    /// List the app keys: name and creation time.
    List {
        #[command(flatten)]
        app: AppArgs,
    },
    /// Revoke an app key: it stops working at once, in running servers too.
    Revoke {
        /// The key's name.
        name: String,
        #[command(flatten)]
        app: AppArgs,
    },
}

/// Which app a command is about.
#[derive(Args)]
struct AppArgs {
    /// An app folder holding `Spacefile.toml`, or the file itself.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Where keys and /tmp folders live (default: `.micros/` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

impl AppArgs {
    /// The app's credentials.
    fn credentials(&self) -> anyhow::Result<micros::Credentials> {
        credentials_of(&self.path, self.state_dir.clone())
    }
}

/// The credentials of the app at `path`.
fn credentials_of(
    path: &std::path::Path,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<micros::Credentials> {
    let manifest = Manifest::load(path)?;
    let config = Config {
        state_dir,
        ..Config::default()
    };
    let state = micros::state::StateDir::open(config.state_dir_for(&manifest))?;
    Ok(micros::Credentials::open(&state))
}

#[derive(Args)]
struct Trigger {
    /// `[PATH] ACTION_ID`: the app (folder or Spacefile.toml, default `.`) and the action's id.
    #[arg(num_args = 1..=2, value_names = ["PATH", "ACTION_ID"], required = true)]
    args: Vec<String>,
    /// Set a declared preset: `MICRO.NAME=VALUE`, or `NAME=VALUE` for every Micro declaring it.
    #[arg(long = "env", value_name = "[MICRO.]NAME=VALUE")]
    env: Vec<EnvSetting>,
    /// Where keys and /tmp folders live (default: `.micros/` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    outbound: OutboundArgs,
}

#[derive(Args)]
struct Up {
    /// An app folder holding `Spacefile.toml`, or the file itself.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, default_value = micros::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Run each Micro's build `commands` before serving.
    #[arg(long)]
    build: bool,
    /// Set a declared preset: `MICRO.NAME=VALUE`, or `NAME=VALUE` for every Micro declaring it.
    #[arg(long = "env", value_name = "[MICRO.]NAME=VALUE")]
    env: Vec<EnvSetting>,
    /// `DETA_SPACE_APP_HOSTNAME` (default: the listen address).
    #[arg(long)]
    hostname: Option<String>,
    /// Where keys and /tmp folders live (default: `.micros/` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Override an action's schedule, or turn it off: `ID=INTERVAL` or `ID=off`.
    #[arg(long = "action", value_name = "ID=INTERVAL|ID=off")]
    actions: Vec<ActionOverride>,
    /// Serve `/__space/metrics` (Prometheus text) on this address, e.g. `127.0.0.1:9100`; off
    /// unless given. It takes no credentials, so it must be a loopback address unless
    /// `--admin-remote` says otherwise.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Allow `--admin` on an address other than loopback (a private network you control).
    #[arg(long, requires = "admin")]
    admin_remote: bool,
    /// Allocate each execution's memory and instances on demand instead of from the pool
    /// reserved at load (slower; for comparison, or a host short of address space).
    #[arg(long)]
    no_pooling: bool,
    /// Open every route of every Micro to anyone: no owner token, no app keys. For local
    /// development only; said loudly in the log.
    #[arg(long)]
    no_auth: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    front_door: FrontDoorArgs,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    outbound: OutboundArgs,
}

/// Where Micros may send outbound HTTP beyond the public internet, and its limits.
#[derive(Args)]
struct OutboundArgs {
    /// Also allow outbound HTTP to a network or host (loopback, private... are closed by
    /// default): `10.0.0.0/8`, `127.0.0.1`, `api.internal`. Repeatable.
    #[arg(long = "allow-outbound", value_name = "CIDR|HOST")]
    allow: Vec<micros::AllowOutbound>,
    /// Time to resolve, connect and shake hands with an outbound destination.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = micros::config::parse_duration)]
    outbound_connect_timeout: Duration,
    /// Time from an outbound request to its response head.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = micros::config::parse_duration)]
    outbound_first_byte_timeout: Duration,
    /// Outbound requests one execution may have open at once.
    #[arg(long, value_name = "N", default_value_t = micros::outbound::DEFAULT_MAX_OUTBOUND)]
    max_outbound: usize,
}

impl From<OutboundArgs> for micros::OutboundConfig {
    fn from(args: OutboundArgs) -> Self {
        micros::OutboundConfig {
            allow: args.allow,
            connect_timeout: args.outbound_connect_timeout,
            first_byte_timeout: args.outbound_first_byte_timeout,
            max_concurrent: args.max_outbound,
        }
    }
}

/// What compiling one component at load may cost before it is refused.
#[derive(Args)]
struct CompileArgs {
    /// Time compiling one component may take.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = micros::config::parse_duration)]
    compile_timeout: Duration,
    /// Growth of the runtime's memory while one component compiles.
    #[arg(long, value_name = "SIZE", default_value = "2GiB", value_parser = micros::config::parse_bytes)]
    compile_memory: u64,
}

impl From<CompileArgs> for micros::CompileBudget {
    fn from(args: CompileArgs) -> Self {
        micros::CompileBudget {
            time: args.compile_timeout,
            memory: args.compile_memory,
        }
    }
}

/// The front door's limits: what a client must do before any Micro is involved.
#[derive(Args)]
struct FrontDoorArgs {
    /// Time to send a request's headers, and to start the next request on an idle connection.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = micros::config::parse_duration)]
    header_read_timeout: Duration,
    /// Bytes of request line and headers; 431 past it.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = micros::config::parse_bytes)]
    max_header_size: u64,
    /// Number of request headers; 431 past it.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_HEADERS)]
    max_headers: usize,
    /// Time a request body may go without sending data.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = micros::config::parse_duration)]
    body_read_timeout: Duration,
    /// Connections served at once; further clients wait until one closes.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// A proxy (network or address) whose X-Forwarded-For and Forwarded headers are trusted and
    /// extended; from anyone else they are replaced. Repeatable.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = micros::config::parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
}

impl From<FrontDoorArgs> for micros::FrontDoor {
    fn from(args: FrontDoorArgs) -> Self {
        micros::FrontDoor {
            header_read_timeout: args.header_read_timeout,
            max_header_bytes: usize::try_from(args.max_header_size).unwrap_or(usize::MAX),
            max_headers: args.max_headers,
            body_read_timeout: args.body_read_timeout,
            max_connections: args.max_connections,
            trusted_proxies: args.trusted_proxies,
        }
    }
}

/// The operator's limits; each defaults to Space's.
#[derive(Args)]
struct LimitArgs {
    /// Memory of one execution, all linear memories summed.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = micros::config::parse_bytes)]
    memory_limit: u64,
    /// Wall-clock time of one execution, to the end of the response body.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = micros::config::parse_duration)]
    timeout: Duration,
    /// Largest request body.
    #[arg(long, value_name = "SIZE", default_value = "5.5MiB", value_parser = micros::config::parse_bytes)]
    max_request_body: u64,
    /// Largest response body.
    #[arg(long, value_name = "SIZE", default_value = "5.5MiB", value_parser = micros::config::parse_bytes)]
    max_response_body: u64,
    /// Resource handles one execution may hold at once; past it, the guest traps.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_HANDLES)]
    max_handles: usize,
    /// Executions of one Micro in flight at once; the next gets 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Guest stdout and stderr logged per execution.
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = micros::config::parse_bytes)]
    guest_log_limit: u64,
    /// Bytes of file data in each Micro's /tmp, all its executions together.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = micros::config::parse_bytes)]
    tmp_limit: u64,
    /// Files, folders and links in each Micro's /tmp.
    #[arg(long, value_name = "N", default_value_t = micros::config::DEFAULT_TMP_ENTRIES)]
    tmp_entries: u64,
}

impl From<LimitArgs> for Limits {
    fn from(args: LimitArgs) -> Self {
        Limits {
            memory: args.memory_limit,
            execution_time: args.timeout,
            request_body: args.max_request_body,
            response_body: args.max_response_body,
            guest_output: args.guest_log_limit,
            max_in_flight: args.max_in_flight,
            max_handles: args.max_handles,
            tmp_bytes: args.tmp_limit,
            tmp_entries: args.tmp_entries,
            ..Limits::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check {
            path,
            compile,
            state_dir,
        } => {
            let manifest = Manifest::load(&path)?;
            let config = Config {
                compile: compile.into(),
                state_dir,
                ..Config::default()
            };
            App::check_with(&manifest, &config)?;
            eprintln!("ok: {} Micro(s) valid and compiled", manifest.micros.len());
            Ok(())
        }
        Command::Build { path } => micros::build(&Manifest::load(&path)?).await,
        Command::Up(up) => serve(*up).await,
        Command::Trigger(trigger) => run_trigger(trigger).await,
        Command::Actions { path, actions } => list_actions(&path, actions),
        Command::OwnerToken {
            path,
            rotate,
            state_dir,
        } => {
            let credentials = credentials_of(&path, state_dir)?;
            if rotate {
                let token = credentials.rotate_owner_token()?;
                eprintln!(
                    "new owner token (shown once; the old one no longer works), kept as a hash in `{}`:",
                    credentials.path().display()
                );
                println!("{token}");
            } else if credentials.has_owner_token() {
                eprintln!(
                    "the app has an owner token; only its hash is kept (`{}`), so it cannot be \
                     shown: `micros owner-token --rotate` makes a new one",
                    credentials.path().display()
                );
            } else {
                eprintln!(
                    "the app has no owner token yet: `micros up` makes one on its first start, or \
                     `micros owner-token --rotate` now"
                );
            }
            Ok(())
        }
        Command::Keys { command } => match command {
            KeysCommand::Create { name, app } => {
                let key = app.credentials()?.create_key(&name)?;
                eprintln!("app key `{name}` (shown once; send it as `X-Space-App-Key`):");
                println!("{key}");
                Ok(())
            }
            KeysCommand::List { app } => {
                for key in app.credentials()?.keys()? {
                    println!("{}  {}", key.name, key.created);
                }
                Ok(())
            }
            KeysCommand::Revoke { name, app } => {
                if app.credentials()?.revoke_key(&name)? {
                    eprintln!("app key `{name}` revoked");
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the app has no key named `{name}`: `micros keys list` shows them"
                    )
                }
            }
        },
    }
}

/// `micros trigger`: one run of one action, reported on stdout; a failure is an error.
async fn run_trigger(trigger: Trigger) -> anyhow::Result<()> {
    let (path, id) = match trigger.args.as_slice() {
        [id] => (PathBuf::from("."), id.clone()),
        [path, id] => (PathBuf::from(path), id.clone()),
        _ => anyhow::bail!("usage: micros trigger [PATH] ACTION_ID"),
    };
    let manifest = Manifest::load(&path)?;
    let config = Config {
        limits: trigger.limits.into(),
        compile: trigger.compile.into(),
        outbound: trigger.outbound.into(),
        state_dir: trigger.state_dir,
        env: trigger.env,
        // A one-off run must not empty the /tmp of an instance serving the same app.
        keep_tmp: true,
        ..Config::default()
    };
    let app = tokio::task::spawn_blocking(move || App::load(manifest, &config)).await??;
    let report = app.trigger(&id).await?;
    let status = report
        .status
        .map_or_else(|| "none".to_string(), |s| s.to_string());
    println!("status: {status}");
    println!("duration: {} ms", report.duration.as_millis());
    println!("body:");
    println!("{}", String::from_utf8_lossy(&report.body));
    match report.failure {
        None => Ok(()),
        Some(reason) => anyhow::bail!("action `{id}` failed: {reason}"),
    }
}

/// `micros actions`: every action, its schedule and its next run.
fn list_actions(path: &std::path::Path, overrides: Vec<ActionOverride>) -> anyhow::Result<()> {
    let manifest = Manifest::load(path)?;
    let actions = micros::actions::resolve(&manifest, &overrides)?;
    let now = chrono::Utc::now();
    let mut rows = vec![[
        "MICRO".to_string(),
        "ACTION".into(),
        "SCHEDULE".into(),
        "NEXT RUN (UTC)".into(),
    ]];
    for action in &actions {
        let schedule = action
            .schedule
            .as_ref()
            .map_or_else(|| "off".to_string(), ToString::to_string);
        let next = micros::actions::next_run(action, now).map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        );
        rows.push([action.micro.clone(), action.id.clone(), schedule, next]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        println!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

async fn serve(up: Up) -> anyhow::Result<()> {
    let manifest = Manifest::load(&up.path)?;
    let listener = tokio::net::TcpListener::bind(up.listen)
        .await
        .with_context(|| format!("cannot listen on {}", up.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listen address")?;
    // The first line on stderr: tests and scripts read the address from it.
    eprintln!("micros listening on http://{address}");
    let admin = match up.admin {
        None => None,
        Some(admin) if !admin.ip().is_loopback() && !up.admin_remote => anyhow::bail!(
            "--admin {admin}: not a loopback address; the metrics take no credentials, so \
             serve them on 127.0.0.1 or ::1, or add --admin-remote for a private network you control"
        ),
        Some(admin) => {
            let listener = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("--admin: cannot listen on {admin}"))?;
            let bound = listener
                .local_addr()
                .context("cannot read the admin address")?;
            eprintln!("micros admin on http://{bound}{}", micros::METRICS_PATH);
            Some(listener)
        }
    };
    if up.build {
        micros::build(&manifest).await?;
    }
    let auth = if up.no_auth {
        micros::AuthMode::Off
    } else {
        micros::AuthMode::Required
    };
    let config = Config {
        limits: up.limits.into(),
        front_door: up.front_door.into(),
        compile: up.compile.into(),
        outbound: up.outbound.into(),
        state_dir: up.state_dir,
        hostname: up.hostname,
        address,
        env: up.env,
        actions: up.actions,
        auth,
        pooling: !up.no_pooling,
        keep_tmp: false,
    };
    if auth == micros::AuthMode::Required {
        let state = micros::state::StateDir::open(config.state_dir_for(&manifest))?;
        if let Some(token) = micros::Credentials::open(&state).ensure_owner_token()? {
            // Printed once, never logged: only its hash is kept.
            eprintln!(
                "\nThe app's owner token (shown this once; keep it safe; `micros owner-token --rotate` makes a new one):\n\n    {token}\n\nSend it as `Authorization: Bearer <token>`, or log in at http://{address}/__space/login\n"
            );
        }
    }
    let app = tokio::task::spawn_blocking(move || App::load(manifest, &config)).await??;
    tracing::info!("serving on http://{address}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let admin = admin.map(|listener| {
        let mut stopped = stopped.clone();
        tokio::spawn(micros::serve_admin(app.clone(), listener, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let served = micros::serve(app, listener, async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    })
    .await;
    if let Some(admin) = admin {
        admin.abort();
    }
    served
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
