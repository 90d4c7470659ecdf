//! The commands that talk to a `micros server` through its admin API: `login`, `push`, `apps`,
//! `releases`, `rollback`, `users`, `domains`. A thin client: each is one or two API calls.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt as _;
use micros::Manifest;

use super::client::{
    Login, Remote, Upload, connect, logins_path, normalize_url, read_logins, request, write_logins,
};
use serde_json::{Value, json};

/// Which server a command talks to.
#[derive(Args, Clone)]
pub(crate) struct ServerArg {
    /// The server's URL (default: the one `micros login` stored last).
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
}

/// `micros apps`.
#[derive(Subcommand)]
pub(crate) enum AppsCommand {
    /// Delete an app: its releases, data, keys and hosts. Says what will be lost; needs `--yes`.
    Delete {
        /// The app's name.
        app: String,
        /// Confirm: everything of the app is lost.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List an app's keys, or create (shown once) or revoke one.
    Keys {
        /// The app's name.
        app: String,
        /// Create a key of this name and print it.
        #[arg(long, value_name = "NAME", conflicts_with = "revoke")]
        create: Option<String>,
        /// Revoke the key of this name.
        #[arg(long, value_name = "NAME")]
        revoke: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List an app's scheduled actions with their next runs, or run one now.
    Actions {
        /// The app's name.
        app: String,
        /// Run this action once, now, and print how it went.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Make a new owner token for the app's private routes (shown once; the old one stops
    /// working).
    OwnerToken {
        /// The app's name.
        app: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// `micros env`.
#[derive(Subcommand)]
pub(crate) enum EnvCommand {
    /// Set a preset value of an app on the server (`[MICRO.]NAME=VALUE`); in effect from the
    /// next execution.
    Set {
        /// The app's name.
        app: String,
        /// `MICRO.NAME=VALUE`, or `NAME=VALUE` for every Micro declaring it.
        setting: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the preset values set for an app.
    List {
        /// The app's name.
        app: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// `micros users`.
#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user and print their first deploy token (operator only).
    Add {
        /// The user's name.
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// `micros domains`.
#[derive(Subcommand)]
pub(crate) enum DomainsCommand {
    /// Serve an app at a host name of your own too (point its DNS at the server).
    Add {
        /// The app's name.
        app: String,
        /// The host, e.g. `notes.example.org`.
        host: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// `micros login URL`: checks the token with the server, then keeps it.
pub(crate) async fn login(url: &str, token: Option<String>) -> anyhow::Result<()> {
    let url = normalize_url(url)?;
    let token = match token {
        Some(token) => token,
        None => {
            eprintln!(
                "deploy token for {url} (from `micros server`'s first start, or `micros users add`):"
            );
            let mut line = String::new();
            std::io::stdin()
                .read_to_string(&mut line)
                .context("cannot read the token from stdin")?;
            line
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("no token given");
    }
    let (status, answer) = request(
        &url,
        &token,
        http::Method::GET,
        "/whoami",
        Upload::new(Bytes::new()),
    )
    .await?;
    if !status.is_success() {
        bail!(
            "{url} refused the token: {}",
            answer.get("error").and_then(Value::as_str).unwrap_or("")
        );
    }
    let path = logins_path()?;
    let mut logins = read_logins(&path)?;
    logins.servers.insert(url.clone(), Login { token });
    logins.default = Some(url.clone());
    write_logins(&path, &logins)?;
    eprintln!(
        "logged in to {url} as `{}`; the token is kept in `{}`",
        answer.get("user").and_then(Value::as_str).unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// `micros push [PATH]`: builds, packs and uploads the app; the server checks, compiles and
/// swaps it in.
pub(crate) async fn push(
    path: &Path,
    app: Option<String>,
    build: bool,
    server: &ServerArg,
) -> anyhow::Result<()> {
    let remote = Remote::from(server)?;
    let manifest = Manifest::load(path)?;
    let app = match app.or_else(|| manifest.app_name.clone()) {
        Some(app) => app,
        None => bail!("the manifest has no `app_name`: name the app with `--app NAME`"),
    };
    if build {
        eprintln!("building...");
        micros::build(&manifest).await?;
    }
    eprintln!("packing...");
    let bundle = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || micros::server::pack(&manifest)).await??
    };
    eprintln!(
        "uploading {} to {}...",
        bytesize::ByteSize::b(bundle.len() as u64),
        remote.url
    );
    let answer = remote
        .upload(
            http::Method::POST,
            &format!("/apps/{app}/releases"),
            Bytes::from(bundle),
            "the server checks and compiles it...",
        )
        .await?;
    eprintln!(
        "release {} of `{app}` (version {}) is serving at {}",
        answer["release"],
        answer["version"].as_str().unwrap_or("?"),
        remote.app_url(answer["host"].as_str().unwrap_or("?"))
    );
    Ok(())
}

/// `micros apps`.
pub(crate) async fn apps(server: &ServerArg) -> anyhow::Result<()> {
    let answer = Remote::from(server)?
        .call(http::Method::GET, "/apps", Bytes::new())
        .await?;
    for app in answer["apps"].as_array().into_iter().flatten() {
        let source = app["instance_of"]
            .as_str()
            .map(|source| format!(" of {source}"))
            .unwrap_or_default();
        println!(
            "{}  release {}{source}  {}  (owner {})",
            app["name"].as_str().unwrap_or("?"),
            app["release"],
            app["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            app["owner"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

/// `micros apps delete|owner-token`.
pub(crate) async fn apps_command(command: AppsCommand) -> anyhow::Result<()> {
    match command {
        AppsCommand::Delete { app, yes, server } => {
            if !yes {
                bail!(
                    "deleting `{app}` loses its releases, its Base and Drive data, its keys and its \
                     hosts, for good: run again with `--yes` to do it"
                );
            }
            Remote::from(&server)?
                .call(http::Method::DELETE, &format!("/apps/{app}"), Bytes::new())
                .await?;
            eprintln!("deleted `{app}`");
        }
        AppsCommand::Keys {
            app,
            create,
            revoke,
            server,
        } => {
            let remote = Remote::from(&server)?;
            let path = format!("/apps/{app}/keys");
            if let Some(name) = create {
                let body = Bytes::from(json!({ "name": name }).to_string());
                let answer = remote.call(http::Method::POST, &path, body).await?;
                eprintln!(
                    "app key `{name}` of `{app}` (shown once; send it as `X-Space-App-Key`):"
                );
                println!("{}", answer["key"].as_str().unwrap_or(""));
            } else if let Some(name) = revoke {
                let path = format!("{path}/{name}");
                remote
                    .call(http::Method::DELETE, &path, Bytes::new())
                    .await?;
                eprintln!("app key `{name}` of `{app}` revoked");
            } else {
                let answer = remote.call(http::Method::GET, &path, Bytes::new()).await?;
                for key in answer["keys"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {}",
                        key["name"].as_str().unwrap_or("?"),
                        key["created"].as_str().unwrap_or("?")
                    );
                }
            }
        }
        AppsCommand::Actions { app, run, server } => {
            let remote = Remote::from(&server)?;
            if let Some(id) = run {
                let path = format!("/apps/{app}/actions/{id}");
                let answer = remote.call(http::Method::POST, &path, Bytes::new()).await?;
                println!(
                    "{}  {} ms  {}",
                    answer["status"],
                    answer["duration_ms"],
                    answer["body"].as_str().unwrap_or("")
                );
                if let Some(failure) = answer["failure"].as_str() {
                    bail!("action `{id}` failed: {failure}");
                }
            } else {
                let path = format!("/apps/{app}/actions");
                let answer = remote.call(http::Method::GET, &path, Bytes::new()).await?;
                for action in answer["actions"].as_array().into_iter().flatten() {
                    let last = &action["last_run"];
                    let last = match last["at"].as_str() {
                        None => "never run".to_string(),
                        Some(at) => match last["failure"].as_str() {
                            None => format!("last {at} ok ({})", last["status"]),
                            Some(failure) => format!("last {at} failed: {failure}"),
                        },
                    };
                    println!(
                        "{}  {}  {}  next {}  {last}",
                        action["micro"].as_str().unwrap_or("?"),
                        action["id"].as_str().unwrap_or("?"),
                        action["schedule"].as_str().unwrap_or("off"),
                        action["next_run"].as_str().unwrap_or("-")
                    );
                }
            }
        }
        AppsCommand::OwnerToken { app, server } => {
            let answer = Remote::from(&server)?
                .call(
                    http::Method::POST,
                    &format!("/apps/{app}/owner-token"),
                    Bytes::new(),
                )
                .await?;
            eprintln!("new owner token of `{app}` (shown once; the old one no longer works):");
            println!("{}", answer["owner_token"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

/// `micros releases APP`.
pub(crate) async fn releases(app: &str, server: &ServerArg) -> anyhow::Result<()> {
    let answer = Remote::from(server)?
        .call(
            http::Method::GET,
            &format!("/apps/{app}/releases"),
            Bytes::new(),
        )
        .await?;
    for release in answer["releases"].as_array().into_iter().flatten() {
        println!(
            "{}{}  version {}  {}  {}",
            release["id"],
            if release["current"].as_bool() == Some(true) {
                " (current)"
            } else {
                ""
            },
            release["version"].as_str().unwrap_or("?"),
            release["created"].as_str().unwrap_or("?"),
            bytesize::ByteSize::b(release["bytes"].as_u64().unwrap_or(0)),
        );
    }
    Ok(())
}

/// `micros rollback APP [RELEASE]`.
pub(crate) async fn rollback(
    app: &str,
    release: Option<u64>,
    server: &ServerArg,
) -> anyhow::Result<()> {
    let body = match release {
        Some(id) => json!({ "release": id }).to_string(),
        None => String::new(),
    };
    let answer = Remote::from(server)?
        .call(
            http::Method::POST,
            &format!("/apps/{app}/rollback"),
            Bytes::from(body),
        )
        .await?;
    eprintln!(
        "`{app}` serves release {} (version {})",
        answer["release"],
        answer["version"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `micros install APP --as NAME [--user USER]`.
pub(crate) async fn install(
    app: &str,
    name: &str,
    user: Option<&str>,
    server: &ServerArg,
) -> anyhow::Result<()> {
    let mut body = json!({ "name": name });
    if let Some(user) = user {
        body["user"] = json!(user);
    }
    let remote = Remote::from(server)?;
    let answer = remote
        .call(
            http::Method::POST,
            &format!("/apps/{app}/instances"),
            Bytes::from(body.to_string()),
        )
        .await?;
    eprintln!(
        "installed `{name}` (release {} of `{}`, owner {}) at {}",
        answer["release"],
        answer["instance_of"].as_str().unwrap_or(app),
        answer["owner"].as_str().unwrap_or("?"),
        remote.app_url(answer["host"].as_str().unwrap_or("?")),
    );
    Ok(())
}

/// `micros update NAME`.
pub(crate) async fn update(app: &str, server: &ServerArg) -> anyhow::Result<()> {
    let answer = Remote::from(server)?
        .call(
            http::Method::POST,
            &format!("/apps/{app}/update"),
            Bytes::new(),
        )
        .await?;
    if answer["updated"].as_bool() == Some(true) {
        eprintln!(
            "`{app}` updated from release {} to {}",
            answer["from"], answer["release"]
        );
    } else {
        eprintln!(
            "`{app}` already serves release {}, the newest",
            answer["release"]
        );
    }
    Ok(())
}

/// `micros users add NAME`.
pub(crate) async fn users(command: UsersCommand) -> anyhow::Result<()> {
    let UsersCommand::Add { name, server } = command;
    let answer = Remote::from(&server)?
        .call(
            http::Method::POST,
            "/users",
            Bytes::from(json!({ "name": name }).to_string()),
        )
        .await?;
    eprintln!("user `{name}` added; their deploy token (shown once; `micros login URL` takes it):");
    println!("{}", answer["token"].as_str().unwrap_or(""));
    Ok(())
}

/// `micros domains add APP HOST`.
pub(crate) async fn domains(command: DomainsCommand) -> anyhow::Result<()> {
    let DomainsCommand::Add { app, host, server } = command;
    let answer = Remote::from(&server)?
        .call(
            http::Method::POST,
            &format!("/apps/{app}/domains"),
            Bytes::from(json!({ "host": host }).to_string()),
        )
        .await?;
    eprintln!(
        "`{app}` is served at {} too (point its DNS at this server)",
        answer["host"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `micros env set|list`.
pub(crate) async fn env(command: EnvCommand) -> anyhow::Result<()> {
    match command {
        EnvCommand::Set {
            app,
            setting,
            server,
        } => {
            let body = Bytes::from(json!({ "set": setting }).to_string());
            let answer = Remote::from(&server)?
                .call(http::Method::POST, &format!("/apps/{app}/env"), body)
                .await?;
            eprintln!(
                "`{}` set for `{app}`; release {} serves with it from the next execution",
                answer["name"].as_str().unwrap_or("?"),
                answer["release"]
            );
        }
        EnvCommand::List { app, server } => {
            let answer = Remote::from(&server)?
                .call(http::Method::GET, &format!("/apps/{app}/env"), Bytes::new())
                .await?;
            for preset in answer["env"].as_array().into_iter().flatten() {
                let micro = preset["micro"].as_str().unwrap_or("");
                println!(
                    "{}{}={}",
                    if micro.is_empty() {
                        String::new()
                    } else {
                        format!("{micro}.")
                    },
                    preset["name"].as_str().unwrap_or("?"),
                    preset["value"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// `micros logs APP [--follow]`: the app's last log lines (and, following, each new one) as
/// `time level message fields` lines.
pub(crate) async fn logs(app: &str, follow: bool, server: &ServerArg) -> anyhow::Result<()> {
    let remote = Remote::from(server)?;
    let (mut sender, authority) = connect(&remote.url).await?;
    let path = format!(
        "{}/apps/{app}/logs{}",
        micros::server::API_PREFIX,
        if follow { "?follow" } else { "" }
    );
    let request = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", remote.token),
        )
        .body(Upload::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        bail!(
            "{} ({status})",
            answer["error"].as_str().unwrap_or("the server refused")
        );
    }
    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            if let Some(json) = event.trim_end().strip_prefix("data: ") {
                println!("{}", human(json));
            }
        }
    }
    Ok(())
}

/// One log line as a person reads it: `time level message name=value...`.
fn human(json: &str) -> String {
    let Ok(line) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    let mut text = format!(
        "{} {:>5} {}",
        line["time"].as_str().unwrap_or(""),
        line["level"].as_str().unwrap_or(""),
        line["message"].as_str().unwrap_or("")
    );
    if let Some(fields) = line["fields"].as_object() {
        for (name, value) in fields {
            match value.as_str() {
                Some(text_value) => text.push_str(&format!(" {name}={text_value}")),
                None => text.push_str(&format!(" {name}={value}")),
            }
        }
    }
    text
}
