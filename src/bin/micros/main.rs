//! The `micros` command: a thin CLI over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use micros::{ActionOverride, App, Config, EnvSetting, Manifest};

mod client;
mod commands;
mod flags;
mod logs;
mod remote;

use flags::{CompileArgs, FrontDoorArgs, LimitArgs, OutboundArgs, RuntimeArgs};
use logs::LogFormat;

/// The allocator of the binary (feature `mimalloc`, on by default): fewer CPU cycles per request
/// than the system's (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the memory the allocator holds freed back to the system: after loading, that is what
/// compiling the Micros used (hundreds of MiB for a Python or JavaScript component), which would
/// otherwise stay with the process for its life (BENCHMARKS.md).
fn give_back_freed_memory() {
    #[cfg(feature = "mimalloc")]
    #[expect(
        unsafe_code,
        reason = "`mi_collect` is a plain call into the allocator the binary runs on"
    )]
    // SAFETY: `mi_collect` only walks mimalloc's own heaps; it may be called from any thread.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

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

#[derive(Subcommand)]
enum Command {
    /// Make a new app folder from a starter: a Micro with a page, a JSON API, a preset and a
    /// scheduled action, ready for `micros up --build`.
    New {
        /// The folder to create; the app is named after it.
        path: PathBuf,
        /// The starter's language.
        #[arg(long, value_name = "rust|python|js", default_value = "rust", value_parser = clap::value_parser!(micros::starter::Language))]
        lang: micros::starter::Language,
    },
    /// Translate a Space app's `Spacefile` (YAML) into a `Spacefile.toml` beside it, saying
    /// what it assumed, dropped and left to do by hand.
    Import {
        /// The Space app's folder, holding its `Spacefile`.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Replace an existing `Spacefile.toml`.
        #[arg(long)]
        force: bool,
    },
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
    /// Export or import the app's data (Base items and Drive files).
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Host many apps, each at `<app>.<domain>`, deployed to with `micros push`.
    Server(Box<ServerCommand>),
    /// Keep a deploy token for a server (checked with it first); read from stdin unless given.
    Login {
        /// The server, e.g. `http://localhost:4200`.
        url: String,
        /// The token (default: read from stdin, so that it stays out of the shell's history).
        #[arg(long)]
        token: Option<String>,
    },
    /// Build the app, pack it and deploy it to the server: checked and compiled there, then
    /// swapped in (requests in flight finish on the old release).
    Push {
        /// An app folder holding `Spacefile.toml`, or the file itself.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// The app's name on the server (default: the manifest's `app_name`).
        #[arg(long)]
        app: Option<String>,
        /// Do not run the build `commands` first.
        #[arg(long)]
        no_build: bool,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// List your apps on the server (every app, for the operator), or delete one.
    Apps {
        #[command(subcommand)]
        command: Option<remote::AppsCommand>,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// List an app's releases on the server, newest first.
    Releases {
        /// The app's name.
        app: String,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// Serve an earlier release again (default: the one before the current).
    Rollback {
        /// The app's name.
        app: String,
        /// The release's number (`micros releases APP`).
        release: Option<u64>,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// Install another instance of an app on the server: its own host, data, keys, preset
    /// values and owner, running the app's current release until `micros update`.
    Install {
        /// The app to install (one you pushed; the operator may install any).
        app: String,
        /// The new instance's name: it is served at `<NAME>.<domain>`.
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// The user who will own the instance (operator only; default you).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// Move an instance to the current release of the app it was installed from.
    Update {
        /// The instance's name.
        app: String,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// Manage the server's users (operator only).
    Users {
        #[command(subcommand)]
        command: remote::UsersCommand,
    },
    /// Show an app's recent log lines and access lines on the server; `--follow` streams new ones.
    Logs {
        /// The app's name.
        app: String,
        /// Keep streaming new lines until interrupted.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        server: remote::ServerArg,
    },
    /// Set or list the preset values of an app on the server.
    Env {
        #[command(subcommand)]
        command: remote::EnvCommand,
    },
    /// Serve an app at host names of your own.
    Domains {
        #[command(subcommand)]
        command: remote::DomainsCommand,
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

#[derive(Subcommand)]
enum DataCommand {
    /// Write every Base item and Drive file to a new folder (a consistent snapshot; the app
    /// may be running).
    Export {
        /// The folder to create.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        app: AppArgs,
    },
    /// Read a folder written by `export`, or Deta Space's export unzipped (`bases/`, `drives/`),
    /// into the app: items and files of the same key or name are replaced, all or nothing.
    Import {
        /// The folder to read.
        #[arg(long)]
        from: PathBuf,
        /// The app's data limit, as `micros up --data-limit` sets it: an import that would take
        /// the data past it is refused whole.
        #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = micros::config::parse_bytes)]
        data_limit: u64,
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

    /// The app's state folder.
    fn state(&self) -> anyhow::Result<micros::state::StateDir> {
        state_of(&self.path, self.state_dir.clone())
    }
}

/// The credentials of the app at `path`.
fn credentials_of(
    path: &std::path::Path,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<micros::Credentials> {
    Ok(micros::Credentials::open(&state_of(path, state_dir)?))
}

/// The state folder of the app at `path`: `state_dir`, or `.micros/` beside its manifest.
fn state_of(
    path: &std::path::Path,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<micros::state::StateDir> {
    let manifest = Manifest::load(path)?;
    let config = Config {
        state_dir,
        ..Config::default()
    };
    micros::state::StateDir::open(config.state_dir_for(&manifest))
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
struct ServerCommand {
    /// Where the server keeps everything (default: `$XDG_DATA_HOME/micros`, else
    /// `~/.local/share/micros`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, default_value = micros::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Apps are served at `<app>.<domain>`, the admin API at the domain itself.
    #[arg(long, default_value = micros::server::DEFAULT_DOMAIN)]
    domain: String,
    /// Executions one app may have in flight at once, all its Micros together.
    #[arg(long, value_name = "N", default_value_t = micros::server::DEFAULT_APP_MAX_IN_FLIGHT)]
    app_max_in_flight: usize,
    /// Releases kept per app.
    #[arg(long, value_name = "N", default_value_t = micros::server::DEFAULT_KEEP_RELEASES)]
    keep_releases: usize,
    /// Speak HTTPS (HTTP/2 and HTTP/1.1) with this certificate chain (PEM, the server's
    /// certificate first), served for the domain and `<app>.<domain>`: one for both `DOMAIN` and
    /// `*.DOMAIN`. Reloaded when the file changes.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Certificates for custom domains, chosen by the name a client asks for (SNI):
    /// `<host>.crt` with `<host>.key`, or `<host>.pem` holding both. Reloaded when they change.
    #[arg(long, value_name = "DIR", requires = "tls_cert")]
    tls_dir: Option<PathBuf>,
    /// Also listen for plain HTTP here (e.g. `0.0.0.0:80`), answering every request with a
    /// permanent redirect to the same host and path over HTTPS.
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    redirect_listen: Option<SocketAddr>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    front_door: FrontDoorArgs,
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
    /// Build first (as `--build`), then rebuild a Micro whenever a file in its `src` changes and
    /// swap it in; requests already running finish on the old one, a failed build keeps the old
    /// one serving. For development.
    #[arg(long)]
    watch: bool,
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
    #[command(flatten)]
    runtime: RuntimeArgs,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `micros server` also keeps each app's lines for `micros logs`.
    logs::install(cli.log_format, matches!(cli.command, Command::Server(_)));
    let threads = match &cli.command {
        Command::Up(up) => up.runtime.threads,
        Command::Server(server) => server.runtime.threads,
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.into());
    }
    let runtime = match runtime.enable_all().build() {
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
        Command::Import { path, force } => commands::import(&path, force),
        Command::New { path, lang } => {
            let name = micros::starter::create(&path, lang)?;
            eprintln!(
                "made the {} app `{name}` in `{}`; serve it with:\n\n    micros up {} --build\n\n(`--watch` also rebuilds it on every save; its README.md says more)",
                lang.name(),
                path.display(),
                path.display()
            );
            Ok(())
        }
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
        Command::Server(server) => host(*server).await,
        Command::Login { url, token } => remote::login(&url, token).await,
        Command::Push {
            path,
            app,
            no_build,
            server,
        } => remote::push(&path, app, !no_build, &server).await,
        Command::Apps { command, server } => match command {
            None => remote::apps(&server).await,
            Some(command) => remote::apps_command(command).await,
        },
        Command::Releases { app, server } => remote::releases(&app, &server).await,
        Command::Rollback {
            app,
            release,
            server,
        } => remote::rollback(&app, release, &server).await,
        Command::Install {
            app,
            name,
            user,
            server,
        } => remote::install(&app, &name, user.as_deref(), &server).await,
        Command::Update { app, server } => remote::update(&app, &server).await,
        Command::Users { command } => remote::users(command).await,
        Command::Domains { command } => remote::domains(command).await,
        Command::Env { command } => remote::env(command).await,
        Command::Logs {
            app,
            follow,
            server,
        } => remote::logs(&app, follow, &server).await,
        Command::Trigger(trigger) => commands::run_trigger(trigger).await,
        Command::Actions { path, actions } => commands::list_actions(&path, actions),
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
        Command::Data { command } => match command {
            DataCommand::Export { to, app } => {
                let moved = micros::data::export(&app.state()?, &to)?;
                eprintln!(
                    "exported {} item(s) and {} file(s) to `{}`",
                    moved.items,
                    moved.files,
                    to.display()
                );
                Ok(())
            }
            DataCommand::Import {
                from,
                data_limit,
                app,
            } => {
                let imported = micros::data::import(&app.state()?, &from, data_limit)?;
                let moved = imported.moved;
                if imported.format == micros::data::Format::Micros {
                    eprintln!(
                        "imported {} item(s) and {} file(s) from `{}`",
                        moved.items,
                        moved.files,
                        from.display()
                    );
                    return Ok(());
                }
                for path in &imported.skipped {
                    eprintln!("skipped `{}`: a Mac's folder metadata", path.display());
                }
                for (base, items) in &imported.bases {
                    eprintln!("base `{base}`: {items} item(s)");
                }
                for (drive, files) in &imported.drives {
                    eprintln!("drive `{drive}`: {files} file(s)");
                }
                eprintln!(
                    "imported {} item(s) and {} file(s) from Deta Space's export `{}`",
                    moved.items,
                    moved.files,
                    imported.folder.display()
                );
                Ok(())
            }
        },
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
    if up.build || up.watch {
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
        // Everything else as by default: in particular the CLI never switches the limits off,
        // whatever features it was built with.
        ..Config::default()
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
    give_back_freed_memory();
    tracing::info!(threads = serving_threads(), "serving on http://{address}");
    let _batching = logs::batch();
    let watching = if up.watch {
        Some(tokio::spawn(micros::watch(&app)?))
    } else {
        None
    };
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
    if let Some(watching) = watching {
        watching.abort();
    }
    served
}

/// `micros server`: opens the state folder, prints the operator's token on the first start, and
/// serves every app until SIGINT or SIGTERM.
async fn host(command: ServerCommand) -> anyhow::Result<()> {
    let state_dir = match command.state_dir {
        Some(dir) => dir,
        None => micros::server::default_state_dir()
            .context("no HOME to keep the server's state in: give --state-dir")?,
    };
    let listener = tokio::net::TcpListener::bind(command.listen)
        .await
        .with_context(|| format!("cannot listen on {}", command.listen))?;
    let address = listener
        .local_addr()
        .context("cannot read the listen address")?;
    let tls = command
        .tls_cert
        .zip(command.tls_key)
        .map(|(cert, key)| micros::server::TlsConfig {
            dir: command.tls_dir,
            ..micros::server::TlsConfig::new(cert, key)
        });
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line on stderr: tests and scripts read the address from it.
    eprintln!("micros server listening on {scheme}://{address}");
    let redirect = match command.redirect_listen {
        None => None,
        Some(redirect) => {
            let listener = tokio::net::TcpListener::bind(redirect)
                .await
                .with_context(|| format!("--redirect-listen: cannot listen on {redirect}"))?;
            let bound = listener
                .local_addr()
                .context("cannot read the redirect address")?;
            eprintln!("micros server redirecting http://{bound} to https");
            Some(listener)
        }
    };
    let config = micros::server::ServerConfig {
        domain: command.domain,
        app: Config {
            limits: command.limits.into(),
            front_door: command.front_door.into(),
            compile: command.compile.into(),
            outbound: command.outbound.into(),
            address,
            ..Config::default()
        },
        app_max_in_flight: command.app_max_in_flight,
        keep_releases: command.keep_releases,
        tls,
        ..micros::server::ServerConfig::new(&state_dir)
    };
    let domain = config.domain.clone();
    let (server, token) =
        tokio::task::spawn_blocking(move || micros::server::Server::open(config)).await??;
    give_back_freed_memory();
    if let Some(token) = token {
        // Printed once, never logged: only its hash is kept.
        eprintln!(
            "\nThe operator's deploy token (shown this once; keep it safe):\n\n    {token}\n\nLog in with `micros login {scheme}://{address}` and give it.\n"
        );
    }
    tracing::info!(
        state_dir = %state_dir.display(),
        threads = serving_threads(),
        "serving apps at {scheme}://<app>.{domain}:{}",
        address.port()
    );
    let _batching = logs::batch();
    match redirect {
        Some(redirect) => {
            server
                .serve_with_redirect(listener, redirect, shutdown_signal())
                .await
        }
        None => server.serve(listener, shutdown_signal()).await,
    }
}

/// The threads serving requests and running executions (`--threads`), as the runtime has them.
fn serving_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
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
