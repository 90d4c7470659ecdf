//! The admin API, `/__micros/v1/...` on the server's own host: what `micros push`, `micros
//! releases`, `micros rollback` and the rest do, as HTTP and JSON, authenticated with a deploy
//! token. Every refusal is JSON, `{"error": "..."}`, with a message that names the fix.

use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use super::hosts::AppName;
use super::registry::User;
use super::space::{Live, Space};
use crate::sandbox::ResponseBody;
use crate::serving::http::FrontDoorRequest;
use deploy::{delete, install, push, rollback, update};
use manage::{
    KeyCall, actions, add_domain, add_user, keys, list_apps, list_env, log_stream, owner_token,
    releases, run_action, set_env,
};

mod deploy;
mod manage;

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
    // The live log is a stream, not one JSON answer.
    if request.method() == Method::GET
        && let Some(app) = request
            .uri()
            .path()
            .strip_prefix(PREFIX)
            .and_then(|p| p.strip_prefix("/apps/"))
            .and_then(|p| p.strip_suffix("/logs"))
            .filter(|app| !app.contains('/'))
    {
        let follow = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "follow" || p == "follow=true"));
        let streamed = authenticate(space, request.headers())
            .and_then(|user| owned(space, &user, app))
            .map(|app| log_stream(&app, follow));
        match streamed {
            Ok(response) => return response,
            Err(refusal) => return json_response(refusal),
        }
    }
    json_response(match answer(space, request).await {
        Ok(answer) | Err(answer) => answer,
    })
}

/// An answer as a JSON response.
fn json_response((status, body): Answer) -> Response<ResponseBody> {
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
        (&Method::POST, ["apps", app, "instances"]) => {
            let app = installable(space, &user, app)?;
            let body = read_json(request).await?;
            install(space, &user, &app, body).await
        }
        (&Method::POST, ["apps", app, "update"]) => {
            let app = owned(space, &user, app)?;
            update(space, &app).await
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

/// The app `text` names, if `user` may install it: its owner, or the operator.
fn installable(space: &Space, user: &User, text: &str) -> Result<AppName, Answer> {
    if user.operator {
        let name = app_name(text)?;
        return match space.registry.app(name.as_str()) {
            Ok(Some(_)) => Ok(name),
            Ok(None) => Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no app `{name}`: `micros apps` lists them"),
            )),
            Err(error) => Err(internal(&error)),
        };
    }
    owned(space, user, text)
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

/// Loads release `release` of `app` (compiling it unless the compile cache has it) off the
/// async threads.
async fn load(space: &Arc<Space>, app: &AppName, release: u64) -> anyhow::Result<crate::app::App> {
    let space = Arc::clone(space);
    let app = app.clone();
    tokio::task::spawn_blocking(move || space.load_release(&app, release)).await?
}

/// Makes `loaded`, release `release` of `app`, the one it serves: recorded, then swapped in.
fn make_current(
    space: &Space,
    app: &AppName,
    release: u64,
    loaded: crate::app::App,
) -> Result<(), Answer> {
    space
        .registry
        .set_current(app.as_str(), release)
        .map_err(|e| internal(&e))?;
    space
        .hosted_or_new(app)
        .swap(Some(Live::start(loaded, app)));
    Ok(())
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
