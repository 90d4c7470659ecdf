//! The calls that change what an app serves: push (a bundle unpacked, checked, compiled and
//! swapped in), rollback, installing an instance of an app and updating it, and delete.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::{Answer, internal, load, make_current, refuse};
use crate::server::bundle;
use crate::server::hosts::AppName;
use crate::server::registry::User;
use crate::server::space::{Live, Space};
use crate::serving::http::FrontDoorRequest;
use crate::settings::state::{ALPHANUMERIC, random_string};

/// `POST /apps/{app}/releases`, the bundle as the body: unpacked, checked and compiled, then
/// swapped in; the serving release is untouched by any failure.
pub(super) async fn push(
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
    if let Some(source) = record.as_ref().and_then(|r| r.source.as_ref()) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "`{app}` is an instance of `{source}` and runs its releases: push to `{source}`, \
                 then `micros update {app}`"
            ),
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
            let manifest = crate::server::space::check_manifest(&dir)
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
    space
        .hosted_or_new(app)
        .swap(Some(Live::start(loaded, app)));
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
pub(super) async fn rollback(
    space: &Arc<Space>,
    app: &AppName,
    body: Value,
) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let record = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("no app `{app}`")))?;
    let owner = space.release_owner(app).map_err(|e| internal(&e))?;
    let releases = space
        .registry
        .releases(owner.as_str())
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
    let loaded = load(space, app, target.id)
        .await
        .map_err(|e| refuse(StatusCode::CONFLICT, format!("{e:#}")))?;
    make_current(space, app, target.id, loaded)?;
    tracing::info!(app = %app, release = target.id, "rolled back");
    Ok((
        StatusCode::OK,
        json!({ "app": app.as_str(), "release": target.id, "version": target.version }),
    ))
}

/// `DELETE /apps/{app}`: the app, its releases, data, keys and folders. An app with instances
/// is kept until they are deleted: they run its releases.
pub(super) async fn delete(space: &Arc<Space>, app: &AppName) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let instances = instances_of(space, app)?;
    if !instances.is_empty() {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "`{app}` has instances that run its releases ({}): delete them first",
                instances.join(", ")
            ),
        ));
    }
    space
        .registry
        .delete_app(app.as_str())
        .map_err(|e| internal(&e))?;
    space.remove(app);
    crate::server::logs::logs().forget(app.as_str());
    let _ = tokio::fs::remove_dir_all(space.app_dir(app)).await;
    tracing::info!(app = %app, "app deleted");
    Ok((StatusCode::OK, json!({ "deleted": app.as_str() })))
}

/// The names of the instances of `app`.
fn instances_of(space: &Space, app: &AppName) -> Result<Vec<String>, Answer> {
    Ok(space
        .registry
        .apps()
        .map_err(|e| internal(&e))?
        .into_iter()
        .filter(|record| record.source.as_deref() == Some(app.as_str()))
        .map(|record| record.name)
        .collect())
}

/// `POST /apps/{app}/instances`, `{"name": NAME, "user": USER}`: a new app `NAME` that runs
/// `app`'s current release with its own host, data, keys, preset values and owner (`USER`,
/// default the caller; only the operator installs for another user). Installing an instance
/// installs its source.
pub(super) async fn install(
    space: &Arc<Space>,
    user: &User,
    app: &AppName,
    body: Value,
) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "send `{\"name\": NAME}`, the new instance's name",
        ));
    };
    let name = super::app_name(name)?;
    let owner = match body.get("user").and_then(Value::as_str) {
        None => user.name.clone(),
        Some(other) if other == user.name => user.name.clone(),
        Some(other) if user.operator => {
            let known = space
                .registry
                .users()
                .map_err(|e| internal(&e))?
                .iter()
                .any(|u| u.name == other);
            if !known {
                return Err(refuse(
                    StatusCode::NOT_FOUND,
                    format!("there is no user `{other}`: `micros users add {other}` first"),
                ));
            }
            other.to_string()
        }
        Some(_) => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "only the server's operator installs an app for another user",
            ));
        }
    };
    let source = space.release_owner(app).map_err(|e| internal(&e))?;
    let Some(release) = space
        .registry
        .app(source.as_str())
        .map_err(|e| internal(&e))?
        .and_then(|record| record.current)
    else {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("`{source}` serves no release yet: `micros push` one first"),
        ));
    };
    if space
        .registry
        .app(name.as_str())
        .map_err(|e| internal(&e))?
        .is_some()
    {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("the app name `{name}` is taken: install under another name"),
        ));
    }
    space
        .registry
        .add_instance(name.as_str(), &owner, source.as_str(), release)
        .map_err(|e| internal(&e))?;
    let loaded = match load(space, &name, release).await {
        Ok(loaded) => loaded,
        Err(error) => {
            let _ = space.registry.delete_app(name.as_str());
            let _ = tokio::fs::remove_dir_all(space.app_dir(&name)).await;
            return Err(internal(&error));
        }
    };
    space
        .hosted_or_new(&name)
        .swap(Some(Live::start(loaded, &name)));
    tracing::info!(app = %name, source = %source, release, owner, "instance installed");
    Ok((
        StatusCode::CREATED,
        json!({
            "app": name.as_str(), "instance_of": source.as_str(), "release": release,
            "owner": owner, "host": space.primary_host(&name),
        }),
    ))
}

/// `POST /apps/{app}/update`: the instance `app` serves its source's current release, swapped
/// in as a push is. Nothing changes if it serves that one already.
pub(super) async fn update(space: &Arc<Space>, app: &AppName) -> Result<Answer, Answer> {
    let _deploying = space.deploys.lock().await;
    let record = space
        .registry
        .app(app.as_str())
        .map_err(|e| internal(&e))?
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("no app `{app}`")))?;
    let Some(source) = record.source.as_deref() else {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("`{app}` is not an instance: it gets new releases by `micros push`"),
        ));
    };
    let latest = space
        .registry
        .app(source)
        .map_err(|e| internal(&e))?
        .and_then(|r| r.current);
    let Some(latest) = latest else {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("`{source}` serves no release to update to"),
        ));
    };
    if record.current == Some(latest) {
        return Ok((
            StatusCode::OK,
            json!({ "app": app.as_str(), "release": latest, "updated": false }),
        ));
    }
    let loaded = load(space, app, latest)
        .await
        .map_err(|e| refuse(StatusCode::CONFLICT, format!("{e:#}")))?;
    make_current(space, app, latest, loaded)?;
    tracing::info!(app = %app, from = record.current, release = latest, "instance updated");
    Ok((
        StatusCode::OK,
        json!({
            "app": app.as_str(), "release": latest, "updated": true, "from": record.current,
        }),
    ))
}
