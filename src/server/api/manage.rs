//! The calls that read or set an app's state: users, the list of apps and releases, domains,
//! the owner token, preset values, keys, actions and the live log.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};
use tracing::Instrument as _;

use super::{Answer, MAX_JSON, app_name, internal, live, refuse};
use crate::app::config::EnvSetting;
use crate::sandbox::ResponseBody;
use crate::server::hosts::AppName;
use crate::server::registry::{Preset, User};
use crate::server::space::{Live, Space, new_token};

/// `POST /users` (operator only), `{"name"}`: a new user and their first deploy token.
pub(super) fn add_user(space: &Space, user: &User, body: Value) -> Result<Answer, Answer> {
    if !user.operator {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "only the server's operator adds users",
        ));
    }
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "send `{\"name\": NAME}`"));
    };
    let name = app_name(name).map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("`{name}` is not a user name: lower-case letters, digits and `-`"),
        )
    })?;
    let exists = space
        .registry
        .users()
        .map_err(|e| internal(&e))?
        .iter()
        .any(|u| u.name == name.as_str());
    if exists {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("a user `{name}` exists already"),
        ));
    }
    let new = User {
        name: name.to_string(),
        operator: false,
    };
    let token = new_token();
    space
        .registry
        .add_user(&new)
        .and_then(|()| space.registry.add_token(&new.name, &token))
        .map_err(|e| internal(&e))?;
    Ok((
        StatusCode::CREATED,
        json!({ "name": new.name, "token": token }),
    ))
}

pub(super) fn list_apps(space: &Space, user: &User) -> Result<Answer, Answer> {
    let apps = space.registry.apps().map_err(|e| internal(&e))?;
    let domains = space.registry.domains().map_err(|e| internal(&e))?;
    let listed: Vec<Value> = apps
        .into_iter()
        .filter(|app| user.operator || app.owner == user.name)
        .filter_map(|app| {
            let name = app.name.parse::<AppName>().ok()?;
            let mut hosts = vec![space.primary_host(&name)];
            hosts.extend(
                domains
                    .iter()
                    .filter(|(_, a)| *a == app.name)
                    .map(|(h, _)| h.clone()),
            );
            Some(json!({
                "name": app.name, "owner": app.owner, "hosts": hosts, "release": app.current,
                "instance_of": app.source,
            }))
        })
        .collect();
    Ok((StatusCode::OK, json!({ "apps": listed })))
}

/// `GET /apps/{app}/releases`: the kept releases, newest first; an instance's are its source's.
pub(super) fn releases(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let current = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .and_then(|a| a.current);
    let owner = space.release_owner(app).map_err(|e| internal(&e))?;
    let releases = space
        .registry
        .releases(owner.as_str())
        .map_err(|e| internal(&e))?;
    let listed: Vec<Value> = releases
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "version": r.version, "created": r.created, "bytes": r.bytes,
                "current": Some(r.id) == current,
            })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "releases": listed })))
}

/// `POST /apps/{app}/domains`, `{"host": "notes.example.org"}`.
pub(super) fn add_domain(space: &Space, app: &AppName, body: Value) -> Result<Answer, Answer> {
    let Some(host) = body.get("host").and_then(Value::as_str) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "send `{\"host\": HOST}`"));
    };
    let host = crate::server::hosts::normalize(host);
    if !crate::spec::manifest::is_host_name(&host) || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("`{host}` is not a host name such as `notes.example.org`"),
        ));
    }
    let domain = &space.config().domain;
    if host == *domain || host.ends_with(&format!(".{domain}")) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "`{host}` is under the server's own domain `{domain}`, where apps are named by their first label"
            ),
        ));
    }
    let taken = space
        .registry
        .domains()
        .map_err(|e| internal(&e))?
        .into_iter()
        .any(|(h, _)| h == host);
    if taken {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("`{host}` is served by an app already"),
        ));
    }
    space
        .registry
        .add_domain(&host, app.as_str())
        .map_err(|e| internal(&e))?;
    space.reload_hosts().map_err(|e| internal(&e))?;
    Ok((
        StatusCode::CREATED,
        json!({ "app": app.as_str(), "host": host }),
    ))
}

/// `POST /apps/{app}/owner-token`: a new owner token for the app's private routes and login
/// page (the old one stops working), shown once.
pub(super) fn owner_token(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let token = space
        .credentials(app)
        .and_then(|credentials| credentials.rotate_owner_token())
        .map_err(|e| internal(&e))?;
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "owner_token": token }),
    ))
}

/// `GET /apps/{app}/env`: the preset values set for the app.
pub(super) fn list_env(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let presets = space
        .registry
        .presets(app.as_str())
        .map_err(|e| internal(&e))?;
    let listed: Vec<Value> = presets
        .iter()
        .map(|p| json!({ "micro": p.micro, "name": p.name, "value": p.value }))
        .collect();
    Ok((StatusCode::OK, json!({ "env": listed })))
}

/// `POST /apps/{app}/env`, `{"set": "[MICRO.]NAME=VALUE"}`: kept, and in effect from the next
/// execution (the current release is loaded again with it and swapped in).
pub(super) async fn set_env(
    space: &Arc<Space>,
    app: &AppName,
    body: Value,
) -> Result<Answer, Answer> {
    let Some(text) = body.get("set").and_then(Value::as_str) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "send `{\"set\": \"[MICRO.]NAME=VALUE\"}`",
        ));
    };
    let setting: EnvSetting = text
        .parse()
        .map_err(|e: anyhow::Error| refuse(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let _deploying = space.deploys.lock().await;
    let current = live(space, app)?;
    let manifest = current.app.manifest();
    let declared = manifest.micros.iter().any(|m| {
        setting.micro.as_ref().is_none_or(|name| name == &m.name)
            && m.presets.env.iter().any(|p| p.name == setting.name)
    });
    if !declared {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "no Micro of `{app}`'s current release declares a preset `{}`{}: only variables \
                 under `[[micros.presets.env]]` can be set",
                setting.name,
                setting
                    .micro
                    .as_ref()
                    .map(|m| format!(" in Micro `{m}`"))
                    .unwrap_or_default()
            ),
        ));
    }
    let preset = Preset {
        micro: setting
            .micro
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        name: setting.name.to_string(),
        value: setting.value.clone(),
    };
    space
        .registry
        .set_preset(app.as_str(), &preset)
        .map_err(|e| internal(&e))?;
    let release = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .and_then(|a| a.current)
        .ok_or_else(|| refuse(StatusCode::CONFLICT, format!("`{app}` serves no release")))?;
    let loaded = super::load(space, app, release)
        .await
        .map_err(|e| refuse(StatusCode::CONFLICT, format!("{e:#}")))?;
    space
        .hosted_or_new(app)
        .swap(Some(Live::start(loaded, app)));
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "micro": preset.micro, "name": preset.name, "release": release }),
    ))
}

/// What is asked of an app's keys.
pub(super) enum KeyCall<'a> {
    List,
    Create(&'a str),
    Revoke(&'a str),
}

/// `GET|POST /apps/{app}/keys`, `DELETE /apps/{app}/keys/{name}`: the app keys of Micros with
/// `presets.api_keys` (a new key is shown once).
pub(super) fn keys(space: &Space, app: &AppName, call: KeyCall<'_>) -> Result<Answer, Answer> {
    let credentials = space.credentials(app).map_err(|e| internal(&e))?;
    match call {
        KeyCall::List => {
            let keys = credentials.keys().map_err(|e| internal(&e))?;
            let listed: Vec<Value> = keys
                .iter()
                .map(|k| json!({ "name": k.name, "created": k.created }))
                .collect();
            Ok((StatusCode::OK, json!({ "keys": listed })))
        }
        KeyCall::Create(name) => {
            let key = credentials
                .create_key(name)
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            Ok((StatusCode::CREATED, json!({ "name": name, "key": key })))
        }
        KeyCall::Revoke(name) => match credentials.revoke_key(name) {
            Ok(true) => Ok((StatusCode::OK, json!({ "revoked": name }))),
            Ok(false) => Err(refuse(
                StatusCode::NOT_FOUND,
                format!("`{app}` has no key named `{name}`: `GET .../keys` lists them"),
            )),
            Err(error) => Err(internal(&error)),
        },
    }
}

/// Lines a log stream sends at once, at most, before it waits for the client.
const LOG_STREAM_BUFFER: usize = 64;
/// A comment sent to a follower this often when nothing else is: a client that went away is
/// noticed, and proxies keep the stream open.
const LOG_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /apps/{app}/logs[?follow]`: the app's kept log lines, then (following) each new one, as
/// server-sent events (`data: {json}`).
pub(super) fn log_stream(app: &AppName, follow: bool) -> Response<ResponseBody> {
    let (kept, mut new) = crate::server::logs::logs().read(app.as_str());
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(LOG_STREAM_BUFFER);
    tokio::spawn(async move {
        for line in kept {
            if sender
                .send(Bytes::from(format!("data: {line}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let event = match tokio::time::timeout(LOG_KEEPALIVE, new.recv()).await {
                Ok(Ok(line)) => format!("data: {line}\n\n"),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(missed))) => {
                    format!(": {missed} lines missed: the client read too slowly\n\n")
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                Err(_) => ": keep-alive\n\n".to_string(),
            };
            if sender.send(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(ResponseBody::channel(receiver));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// `GET /apps/{app}/actions`: each scheduled action with its schedule, next run and how its
/// last run went.
pub(super) fn actions(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let current = live(space, app)?;
    let now = chrono::Utc::now();
    let listed: Vec<Value> = current
        .app
        .actions()
        .iter()
        .map(|a| {
            json!({
                "micro": a.micro,
                "id": a.id,
                "schedule": a.schedule.as_ref().map(ToString::to_string),
                "next_run": crate::app::actions::next_run(a, now).map(|t| t.to_rfc3339()),
                "last_run": current.app.last_run(&a.id).map(|run| json!({
                    "at": run.at.to_rfc3339(),
                    "status": run.status,
                    "duration_ms": run.duration_ms,
                    "outcome": if run.failure.is_some() { "failed" } else { "ok" },
                    "failure": run.failure,
                })),
            })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "actions": listed })))
}

/// `POST /apps/{app}/actions/{id}`: runs the action once, now, as the scheduler would.
pub(super) async fn run_action(space: &Space, app: &AppName, id: &str) -> Result<Answer, Answer> {
    let current = live(space, app)?;
    let report = current
        .app
        .trigger(id)
        .instrument(current.span.clone())
        .await
        .map_err(|e| refuse(StatusCode::NOT_FOUND, format!("{e:#}")))?;
    Ok((
        StatusCode::OK,
        json!({
            "status": report.status.map(|s| s.as_u16()),
            "body": String::from_utf8_lossy(&report.body[..report.body.len().min(MAX_JSON)]),
            "duration_ms": report.duration.as_millis() as u64,
            "failure": report.failure,
        }),
    ))
}
