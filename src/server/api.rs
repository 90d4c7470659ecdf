//! The admin API, `/__micros/v1/...` on the server's own host: what `micros push`, `micros
//! releases`, `micros rollback` and the rest do, as HTTP and JSON, authenticated with a deploy
//! token. Every refusal is JSON, `{"error": "..."}`, with a message that names the fix.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::bundle;
use super::hosts::AppName;
use super::registry::{Preset, User};
use super::space::{Live, Space, new_token};
use crate::app::config::EnvSetting;
use crate::sandbox::ResponseBody;
use crate::serving::http::FrontDoorRequest;
use crate::settings::state::{ALPHANUMERIC, random_string};

/// Where the API lives on the server's host.
pub(crate) const PREFIX: &str = "/__micros/v1";
/// Largest JSON body the API reads (everything but a bundle).
const MAX_JSON: usize = 64 * 1024;

/// An answer of the API: a status and a JSON body.
type Answer = (StatusCode, Value);

fn refuse(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "error": message.into() }))
}

/// Answers one request to the API.
pub(crate) async fn handle(
    space: &Arc<Space>,
    request: FrontDoorRequest,
) -> Response<ResponseBody> {
    let (status, body) = match answer(space, request).await {
        Ok(answer) | Err(answer) => answer,
    };
    let mut response = Response::new(ResponseBody::full(format!("{body}\n")));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn answer(space: &Arc<Space>, request: FrontDoorRequest) -> Result<Answer, Answer> {
    let user = authenticate(space, request.headers())?;
    let path = request
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["whoami"]) => Ok((
            StatusCode::OK,
            json!({ "user": user.name, "operator": user.operator }),
        )),
        (&Method::POST, ["users"]) => add_user(space, &user, read_json(request).await?),
        (&Method::GET, ["apps"]) => list_apps(space, &user),
        (&Method::POST, ["apps", app, "releases"]) => {
            let app = app_name(app)?;
            push(space, &user, &app, request).await
        }
        (&Method::GET, ["apps", app, "releases"]) => {
            let app = owned(space, &user, app)?;
            releases(space, &app)
        }
        (&Method::POST, ["apps", app, "rollback"]) => {
            let app = owned(space, &user, app)?;
            let body = read_json(request).await?;
            rollback(space, &app, body).await
        }
        (&Method::DELETE, ["apps", app]) => {
            let app = owned(space, &user, app)?;
            delete(space, &app).await
        }
        (&Method::POST, ["apps", app, "domains"]) => {
            let app = owned(space, &user, app)?;
            let body = read_json(request).await?;
            add_domain(space, &app, body)
        }
        (&Method::POST, ["apps", app, "owner-token"]) => {
            let app = owned(space, &user, app)?;
            owner_token(space, &app)
        }
        (&Method::GET, ["apps", app, "env"]) => {
            let app = owned(space, &user, app)?;
            list_env(space, &app)
        }
        (&Method::POST, ["apps", app, "env"]) => {
            let app = owned(space, &user, app)?;
            let body = read_json(request).await?;
            set_env(space, &app, body).await
        }
        (&Method::GET, ["apps", app, "keys"]) => {
            let app = owned(space, &user, app)?;
            keys(space, &app, KeyCall::List)
        }
        (&Method::POST, ["apps", app, "keys"]) => {
            let app = owned(space, &user, app)?;
            let body = read_json(request).await?;
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
            keys(space, &app, KeyCall::Create(name))
        }
        (&Method::DELETE, ["apps", app, "keys", name]) => {
            let app = owned(space, &user, app)?;
            keys(space, &app, KeyCall::Revoke(name))
        }
        (&Method::GET, ["apps", app, "actions"]) => {
            let app = owned(space, &user, app)?;
            actions(space, &app)
        }
        (&Method::POST, ["apps", app, "actions", id]) => {
            let app = owned(space, &user, app)?;
            run_action(space, &app, id).await
        }
        _ => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no API call `{method} {PREFIX}{path}`: see docs/server.md for the calls"),
        )),
    }
}

/// The user whose deploy token the request carries.
fn authenticate(space: &Space, headers: &http::HeaderMap) -> Result<User, Answer> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "send a deploy token as `Authorization: Bearer TOKEN` (`micros login URL` stores one)",
        ));
    };
    match space.registry.user_for_token(token) {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "this deploy token is not known to the server: ask its operator for one",
        )),
        Err(error) => Err(internal(&error)),
    }
}

fn internal(error: &anyhow::Error) -> Answer {
    tracing::error!("admin API: {error:#}");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed; its log says why",
    )
}

fn app_name(text: &str) -> Result<AppName, Answer> {
    text.parse::<AppName>()
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e))
}

/// The app `text` names, if `user` owns it. Another user's app is answered as a missing one:
/// nobody learns which names others use.
fn owned(space: &Space, user: &User, text: &str) -> Result<AppName, Answer> {
    let name = app_name(text)?;
    match space.registry.app(name.as_str()) {
        Ok(Some(record)) if record.owner == user.name => Ok(name),
        Ok(_) => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("you have no app `{name}`: `micros apps` lists yours"),
        )),
        Err(error) => Err(internal(&error)),
    }
}

/// Reads a small JSON body (an empty one is `null`).
async fn read_json(request: FrontDoorRequest) -> Result<Value, Answer> {
    let body = http_body_util::Limited::new(request.into_body(), MAX_JSON)
        .collect()
        .await
        .map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read (at most {MAX_JSON} bytes): {e}"),
            )
        })?
        .to_bytes();
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })
}

fn add_user(space: &Space, user: &User, body: Value) -> Result<Answer, Answer> {
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

fn list_apps(space: &Space, user: &User) -> Result<Answer, Answer> {
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
            }))
        })
        .collect();
    Ok((StatusCode::OK, json!({ "apps": listed })))
}

fn releases(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let current = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .and_then(|a| a.current);
    let releases = space
        .registry
        .releases(app.as_str())
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

/// `POST /apps/{app}/releases`, the bundle as the body: unpacked, checked and compiled, then
/// swapped in; the serving release is untouched by any failure.
async fn push(
    space: &Arc<Space>,
    user: &User,
    app: &AppName,
    request: FrontDoorRequest,
) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let record = space.registry.app(app.as_str()).map_err(|e| internal(&e))?;
    if record.as_ref().is_some_and(|r| r.owner != user.name) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("the app name `{app}` is taken by another user: push under another name"),
        ));
    }
    let upload = match receive(space, app, request).await {
        Ok(upload) => upload,
        Err(refusal) => {
            if record.is_none() {
                let _ = tokio::fs::remove_dir_all(space.app_dir(app)).await;
            }
            return Err(refusal);
        }
    };
    if record.is_none() {
        space
            .registry
            .add_app(app.as_str(), &user.name)
            .map_err(|e| internal(&e))?;
    }
    let release = space
        .registry
        .add_release(app.as_str(), "", upload.1)
        .map_err(|e| internal(&e))?;
    let dir = space.release_dir(app, release.id);
    let loaded = {
        let space = Arc::clone(space);
        let app = app.clone();
        let dir = dir.clone();
        let file = upload.0.clone();
        tokio::task::spawn_blocking(move || -> Result<(crate::app::App, String), Answer> {
            let _ = std::fs::remove_dir_all(&dir);
            let bundle = std::fs::File::open(&file).map_err(|e| internal(&e.into()))?;
            bundle::unpack(std::io::BufReader::new(bundle), &dir)
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
            let manifest = super::space::check_manifest(&dir)
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            let version = manifest.version.clone();
            let loaded = space
                .load_release(&app, release.id)
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            Ok((loaded, version))
        })
        .await
        .map_err(|e| internal(&e.into()))
        .and_then(|r| r)
    };
    let _ = tokio::fs::remove_file(&upload.0).await;
    let (loaded, version) = match loaded {
        Ok(loaded) => loaded,
        Err(refusal) => {
            // Nothing of the refused release stays: no row, no folder.
            let _ = space.registry.remove_release(app.as_str(), release.id);
            let _ = tokio::fs::remove_dir_all(&dir).await;
            forget_if_empty(space, app);
            return Err(refusal);
        }
    };
    // The version is known once the manifest is read: the row gets it now.
    space
        .registry
        .set_version(app.as_str(), release.id, &version)
        .map_err(|e| internal(&e))?;
    space
        .registry
        .set_current(app.as_str(), release.id)
        .map_err(|e| internal(&e))?;
    space.hosted_or_new(app).swap(Some(Live::start(loaded)));
    if let Err(error) = space.prune(app, release.id) {
        tracing::warn!(app = %app, "old releases were not all removed: {error:#}");
    }
    tracing::info!(app = %app, release = release.id, version, "release swapped in");
    Ok((
        StatusCode::CREATED,
        json!({
            "app": app.as_str(), "release": release.id, "version": version,
            "bytes": upload.1, "host": space.primary_host(app),
        }),
    ))
}

/// An app made by a push that failed before any release: it is forgotten again.
fn forget_if_empty(space: &Space, app: &AppName) {
    if let Ok(Some(record)) = space.registry.app(app.as_str())
        && record.current.is_none()
        && space
            .registry
            .releases(app.as_str())
            .is_ok_and(|r| r.is_empty())
    {
        let _ = space.registry.delete_app(app.as_str());
        let _ = std::fs::remove_dir_all(space.app_dir(app));
    }
}

/// Streams the uploaded bundle to a file of its own, at most as many bytes as a bundle may
/// unpack to; the file and its length.
async fn receive(
    space: &Space,
    app: &AppName,
    request: FrontDoorRequest,
) -> Result<(std::path::PathBuf, u64), Answer> {
    let folder = space.app_dir(app).join("uploads");
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|e| internal(&e.into()))?;
    let path = folder.join(format!("{}.tar.gz", random_string(16, ALPHANUMERIC)));
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| internal(&e.into()))?;
    let mut body = request.into_body();
    let mut written = 0u64;
    let result = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            written += data.len() as u64;
            if written > bundle::MAX_UNPACKED_BYTES {
                return Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the bundle is over {} bytes, the most an app may upload",
                        bundle::MAX_UNPACKED_BYTES
                    ),
                ));
            }
            write(&mut file, &data).await?;
        }
        file.flush().await.map_err(|e| internal(&e.into()))?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok((path, written)),
        Err(refusal) => {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
            Err(refusal)
        }
    }
}

async fn write(file: &mut tokio::fs::File, data: &Bytes) -> Result<(), Answer> {
    file.write_all(data).await.map_err(|e| internal(&e.into()))
}

/// `POST /apps/{app}/rollback`, `{"release": N}` or nothing for the one before the current.
async fn rollback(space: &Arc<Space>, app: &AppName, body: Value) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let record = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("no app `{app}`")))?;
    let releases = space
        .registry
        .releases(app.as_str())
        .map_err(|e| internal(&e))?;
    let target = match body.get("release").and_then(Value::as_u64) {
        Some(id) => releases.iter().find(|r| r.id == id),
        None => releases
            .iter()
            .find(|r| record.current.is_some_and(|current| r.id < current)),
    };
    let Some(target) = target.cloned() else {
        let kept: Vec<String> = releases.iter().map(|r| r.id.to_string()).collect();
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no such release of `{app}` to roll back to (kept: {})",
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            ),
        ));
    };
    let loaded = {
        let space = Arc::clone(space);
        let app = app.clone();
        tokio::task::spawn_blocking(move || space.load_release(&app, target.id))
            .await
            .map_err(|e| internal(&e.into()))?
            .map_err(|e| refuse(StatusCode::CONFLICT, format!("{e:#}")))?
    };
    space
        .registry
        .set_current(app.as_str(), target.id)
        .map_err(|e| internal(&e))?;
    space.hosted_or_new(app).swap(Some(Live::start(loaded)));
    tracing::info!(app = %app, release = target.id, "rolled back");
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "release": target.id, "version": target.version }),
    ))
}

/// `DELETE /apps/{app}`: the app, its releases, data, keys and folders.
async fn delete(space: &Arc<Space>, app: &AppName) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    space
        .registry
        .delete_app(app.as_str())
        .map_err(|e| internal(&e))?;
    space.remove(app);
    let _ = tokio::fs::remove_dir_all(space.app_dir(app)).await;
    tracing::info!(app = %app, "app deleted");
    Ok((StatusCode::OK, json!({ "deleted": app.as_str() })))
}

/// `POST /apps/{app}/domains`, `{"host": "notes.example.org"}`.
fn add_domain(space: &Space, app: &AppName, body: Value) -> Result<Answer, Answer> {
    let Some(host) = body.get("host").and_then(Value::as_str) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "send `{\"host\": HOST}`"));
    };
    let host = super::hosts::normalize(host);
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
    space.add_domain(&host, app);
    Ok((
        StatusCode::CREATED,
        json!({ "app": app.as_str(), "host": host }),
    ))
}

/// `POST /apps/{app}/owner-token`: a new owner token for the app's private routes and login
/// page (the old one stops working), shown once.
fn owner_token(space: &Space, app: &AppName) -> Result<Answer, Answer> {
    let state = crate::settings::state::StateDir::open(space.app_dir(app).join("state"))
        .map_err(|e| internal(&e))?;
    let token = crate::services::auth::Credentials::open(&state)
        .rotate_owner_token()
        .map_err(|e| internal(&e))?;
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "owner_token": token }),
    ))
}

/// The release `app` serves now, or a refusal that says to push one.
fn live(space: &Space, app: &AppName) -> Result<Arc<Live>, Answer> {
    space.hosted(app).and_then(|h| h.live()).ok_or_else(|| {
        refuse(
            StatusCode::CONFLICT,
            format!("`{app}` serves no release yet: `micros push` one first"),
        )
    })
}

/// `GET /apps/{app}/env`: the preset values set for the app.
fn list_env(space: &Space, app: &AppName) -> Result<Answer, Answer> {
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
async fn set_env(space: &Arc<Space>, app: &AppName, body: Value) -> Result<Answer, Answer> {
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
    let loaded = {
        let space = Arc::clone(space);
        let app = app.clone();
        tokio::task::spawn_blocking(move || space.load_release(&app, release))
            .await
            .map_err(|e| internal(&e.into()))?
            .map_err(|e| refuse(StatusCode::CONFLICT, format!("{e:#}")))?
    };
    space.hosted_or_new(app).swap(Some(Live::start(loaded)));
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "micro": preset.micro, "name": preset.name, "release": release }),
    ))
}

/// What is asked of an app's keys.
enum KeyCall<'a> {
    List,
    Create(&'a str),
    Revoke(&'a str),
}

/// `GET|POST /apps/{app}/keys`, `DELETE /apps/{app}/keys/{name}`: the app keys of Micros with
/// `presets.api_keys` (a new key is shown once).
fn keys(space: &Space, app: &AppName, call: KeyCall<'_>) -> Result<Answer, Answer> {
    let state = crate::settings::state::StateDir::open(space.app_dir(app).join("state"))
        .map_err(|e| internal(&e))?;
    let credentials = crate::services::auth::Credentials::open(&state);
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

/// `GET /apps/{app}/actions`: each scheduled action with its schedule and next run.
fn actions(space: &Space, app: &AppName) -> Result<Answer, Answer> {
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
            })
        })
        .collect();
    Ok((StatusCode::OK, json!({ "actions": listed })))
}

/// `POST /apps/{app}/actions/{id}`: runs the action once, now, as the scheduler would.
async fn run_action(space: &Space, app: &AppName, id: &str) -> Result<Answer, Answer> {
    let current = live(space, app)?;
    let report = current
        .app
        .trigger(id)
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
