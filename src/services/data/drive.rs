//! Deta Drive's operations over a [`FileStore`]: upload (whole or in parts), download, list and
//! delete, with Deta's request and response shapes and limits.

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::base::error;
use super::files::{FileStore, Finished};

/// Bytes of one request to Drive: a whole upload, or one part of a chunked one (Deta's limit).
pub const MAX_CHUNK_BYTES: usize = 10 * 1024 * 1024;
/// Bytes of one file put together from parts: the file is held in memory to be joined and
/// served, so it is bounded.
pub const MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Names one list page or one delete may hold (Deta's limit).
pub const MAX_NAMES: usize = 1000;
/// Bytes of a file name.
pub(super) const MAX_NAME_BYTES: usize = 1024;
/// Characters of an upload's id (lowercase letters and digits).
const UPLOAD_ID_LEN: usize = 24;
/// The type of a file uploaded without one.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// What Drive answers: JSON, or a file's bytes.
pub(crate) enum Answer {
    /// A status and a JSON body.
    Json(u16, Value),
    /// A file, with its content type.
    File(String, Vec<u8>),
}

impl From<(u16, Value)> for Answer {
    fn from((status, body): (u16, Value)) -> Self {
        Self::Json(status, body)
    }
}

/// One request to a drive, as the service read it.
pub(crate) struct DriveRequest {
    /// The app's project id, which Deta's answers name.
    pub(crate) project_id: String,
    pub(crate) method: Method,
    /// What follows `{drive}/`: `files`, `files/download`, `uploads`, `uploads/{id}/parts`...
    pub(crate) operation: String,
    pub(crate) query: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn failed(error: &anyhow::Error) -> Answer {
    tracing::error!(error.type = "data", "drive storage failed: {error:#}");
    super::base::error(
        500,
        "the app's data could not be read or written; see the runtime's log",
    )
    .into()
}

/// The `name` parameter, checked.
fn name(query: &str) -> Result<String, Answer> {
    let Some(name) = param(query, "name") else {
        return Err(error(400, "the file's `name` is missing (`?name=...`)").into());
    };
    check_name(&name).map_err(|refusal| error(400, refusal))?;
    Ok(name)
}

/// What a file's name in a drive must be, wherever it comes from (an upload, an import).
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the file's `name` is empty".into());
    }
    if name.ends_with('/') {
        return Err(format!(
            "`{name}` ends with `/`: a file's name cannot be a folder"
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("the file's name is past {MAX_NAME_BYTES} bytes"));
    }
    Ok(())
}

/// Answers one Drive request.
pub(crate) fn serve(store: &dyn FileStore, drive: &str, request: &DriveRequest) -> Answer {
    let answered = match (&request.method, request.operation.as_str()) {
        (&Method::POST, "files") => upload(store, drive, request),
        (&Method::GET, "files/download") => download(store, drive, &request.query),
        (&Method::GET, "files") => list(store, drive, &request.query),
        (&Method::DELETE, "files") => delete(store, drive, &request.body),
        (&Method::POST, "uploads") => start(store, drive, request),
        (method, operation) => match operation.strip_prefix("uploads/") {
            Some(rest) => match (method, rest.split_once('/')) {
                (&Method::POST, Some((id, "parts"))) => part(store, drive, id, request),
                (&Method::PATCH, None) => finish(store, drive, rest, request),
                (&Method::DELETE, None) => abort(store, drive, rest, request),
                _ => Err(unknown(method, operation)),
            },
            None => Err(unknown(method, operation)),
        },
    };
    answered.unwrap_or_else(|answer| answer)
}

/// What an operation reads whole into memory, to be sized (and room waited for) before it runs.
pub(crate) enum Holds {
    /// Nothing but its request and answer.
    Nothing,
    /// The file called this, which a download reads.
    File(String),
    /// This upload's parts, which a finish joins: the file's name, the upload's id.
    Upload(String, String),
}

impl DriveRequest {
    /// What this operation will hold in memory (no storage is read to tell).
    pub(crate) fn holds(&self) -> Holds {
        let Ok(name) = name(&self.query) else {
            return Holds::Nothing;
        };
        match (&self.method, self.operation.as_str()) {
            (&Method::GET, "files/download") => Holds::File(name),
            (&Method::PATCH, operation) => match operation.strip_prefix("uploads/") {
                Some(id) if !id.contains('/') => Holds::Upload(name, id.to_string()),
                _ => Holds::Nothing,
            },
            _ => Holds::Nothing,
        }
    }
}

/// The bytes `holds` will take (0 for one that will fail anyway), at most [`MAX_FILE_BYTES`].
pub(crate) fn held_bytes(store: &dyn FileStore, drive: &str, holds: &Holds) -> u64 {
    let size = match holds {
        Holds::Nothing => Ok(None),
        Holds::File(name) => store.file_size(drive, name),
        Holds::Upload(name, id) => store.upload_size(drive, name, id),
    };
    size.ok().flatten().unwrap_or(0).min(MAX_FILE_BYTES)
}

fn unknown(method: &Method, operation: &str) -> Answer {
    error(
        404,
        format!("{method} `{operation}` is not a Drive operation"),
    )
    .into()
}

/// The JSON Deta answered about a file: its name, project and drive.
fn about(request: &DriveRequest, drive: &str, name: &str) -> Value {
    json!({ "name": name, "project_id": request.project_id, "drive_name": drive })
}

/// The same for an upload in parts, with its id.
fn about_upload(request: &DriveRequest, drive: &str, name: &str, id: &str) -> Value {
    let mut answer = about(request, drive, name);
    answer["upload_id"] = json!(id);
    answer
}

/// A file's content type: the one sent with it, or, if none or only a generic one (what the
/// SDKs send by default), one guessed from its name's extension, as Deta did.
fn content_type(given: Option<&str>, name: &str) -> String {
    match given.map(str::trim) {
        Some(given)
            if !given.is_empty()
                && !given.eq_ignore_ascii_case(DEFAULT_CONTENT_TYPE)
                && !given.eq_ignore_ascii_case("binary/octet-stream") =>
        {
            given.to_string()
        }
        _ => mime_guess::from_path(name)
            .first_raw()
            .unwrap_or(DEFAULT_CONTENT_TYPE)
            .to_string(),
    }
}

fn upload(store: &dyn FileStore, drive: &str, request: &DriveRequest) -> Result<Answer, Answer> {
    let name = name(&request.query)?;
    let content_type = content_type(request.content_type.as_deref(), &name);
    store
        .put_file(drive, &name, &content_type, &request.body)
        .map_err(|e| failed(&e))?;
    Ok(Answer::Json(201, about(request, drive, &name)))
}

fn download(store: &dyn FileStore, drive: &str, query: &str) -> Result<Answer, Answer> {
    let name = name(query)?;
    match store.get_file(drive, &name).map_err(|e| failed(&e))? {
        Some(file) => Ok(Answer::File(file.content_type, file.data)),
        None => Err(error(404, format!("no file called `{name}`")).into()),
    }
}

fn list(store: &dyn FileStore, drive: &str, query: &str) -> Result<Answer, Answer> {
    let limit = match param(query, "limit") {
        None => MAX_NAMES,
        Some(limit) => match limit.parse::<usize>() {
            Ok(n) if (1..=MAX_NAMES).contains(&n) => n,
            _ => {
                return Err(error(400, format!("`limit` must be from 1 to {MAX_NAMES}")).into());
            }
        },
    };
    let prefix = param(query, "prefix").unwrap_or_default();
    let last = param(query, "last");
    let (names, more) = store
        .list(drive, &prefix, last.as_deref(), limit)
        .map_err(|e| failed(&e))?;
    // As on Deta, `paging` is there only when more names follow.
    let mut answer = json!({ "names": names });
    if more && let Some(last) = names.last() {
        answer["paging"] = json!({ "size": names.len(), "last": last });
    }
    Ok(Answer::Json(200, answer))
}

fn delete(store: &dyn FileStore, drive: &str, body: &Bytes) -> Result<Answer, Answer> {
    let names: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body.get("names").cloned())
        .and_then(|names| serde_json::from_value(names).ok())
        .ok_or_else(|| Answer::from(error(400, "the body must be {\"names\": [...]}")))?;
    if names.len() > MAX_NAMES {
        return Err(error(
            400,
            format!("{} names in one delete: at most {MAX_NAMES}", names.len()),
        )
        .into());
    }
    if names.is_empty() {
        return Err(error(400, "no names to delete").into());
    }
    let mut deleted = Vec::new();
    let mut refused = serde_json::Map::new();
    for name in names {
        if name.trim().is_empty() {
            refused.insert(name, json!("invalid name"));
            continue;
        }
        store.delete_file(drive, &name).map_err(|e| failed(&e))?;
        // As on Deta, a name that was not there counts as deleted.
        deleted.push(name);
    }
    Ok(Answer::Json(
        200,
        json!({ "deleted": deleted, "failed": refused }),
    ))
}

fn start(store: &dyn FileStore, drive: &str, request: &DriveRequest) -> Result<Answer, Answer> {
    let name = name(&request.query)?;
    let id = crate::settings::state::random_string(
        UPLOAD_ID_LEN,
        b"abcdefghijklmnopqrstuvwxyz0123456789",
    );
    let content_type = content_type(request.content_type.as_deref(), &name);
    store
        .start_upload(drive, &name, &id, &content_type)
        .map_err(|e| failed(&e))?;
    Ok(Answer::Json(202, about_upload(request, drive, &name, &id)))
}

fn part(
    store: &dyn FileStore,
    drive: &str,
    id: &str,
    request: &DriveRequest,
) -> Result<Answer, Answer> {
    let name = name(&request.query)?;
    let part = param(&request.query, "part")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| *p >= 1)
        .ok_or_else(|| Answer::from(error(400, "`part` must be a number from 1")))?;
    if !store
        .put_part(drive, &name, id, part, &request.body)
        .map_err(|e| failed(&e))?
    {
        return Err(no_upload(id, &name));
    }
    let mut answer = about_upload(request, drive, &name, id);
    answer["part"] = json!(part);
    Ok(Answer::Json(200, answer))
}

fn no_upload(id: &str, name: &str) -> Answer {
    error(404, format!("no upload `{id}` of `{name}`")).into()
}

fn finish(
    store: &dyn FileStore,
    drive: &str,
    id: &str,
    request: &DriveRequest,
) -> Result<Answer, Answer> {
    let name = name(&request.query)?;
    match store
        .finish_upload(drive, &name, id, MAX_FILE_BYTES)
        .map_err(|e| failed(&e))?
    {
        Finished::Stored => {
            Ok(Answer::Json(200, about_upload(request, drive, &name, id)))
        }
        Finished::NoUpload => Err(no_upload(id, &name)),
        Finished::TooLarge(size) => Err(error(
            413,
            format!(
                "the parts of `{name}` are {size} bytes, past the limit of {MAX_FILE_BYTES} for one file; abort the upload"
            ),
        )
        .into()),
    }
}

fn abort(
    store: &dyn FileStore,
    drive: &str,
    id: &str,
    request: &DriveRequest,
) -> Result<Answer, Answer> {
    let name = name(&request.query)?;
    if !store
        .abort_upload(drive, &name, id)
        .map_err(|e| failed(&e))?
    {
        return Err(no_upload(id, &name));
    }
    Ok(Answer::Json(200, about_upload(request, drive, &name, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_type_is_kept_or_guessed_from_the_name() {
        assert_eq!(content_type(Some("text/csv"), "a.png"), "text/csv");
        assert_eq!(content_type(None, "photos/cat.png"), "image/png");
        assert_eq!(
            content_type(Some("binary/octet-stream"), "notes.txt"),
            "text/plain"
        );
        assert_eq!(
            content_type(Some("application/octet-stream"), "a.json"),
            "application/json"
        );
        assert_eq!(content_type(Some(""), "README"), DEFAULT_CONTENT_TYPE);
        assert_eq!(
            content_type(None, "archive.unknownext"),
            DEFAULT_CONTENT_TYPE
        );
    }
}
