//! App data: Deta Base and Drive, answered by the runtime itself. A Micro reaches them as it
//! reached Deta, through `https://database.deta.sh/v1/{project_id}/{base}/...` and
//! `https://drive.deta.sh/v1/{project_id}/{drive}/...` with its `DETA_PROJECT_KEY` (such requests
//! never leave the machine), and the owner's browser at `/__space/v0/base/{base}/...` and
//! `/__space/v0/drive/{drive}/...`. Items and files live in an `ItemStore`
//! and a `FileStore`: by default SQLite in the app's state folder, every
//! write durable before it is acknowledged.

mod base;
mod drive;
mod files;
mod query;
mod store;
mod transfer;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::Value;
use subtle::ConstantTimeEq as _;

pub use base::{MAX_ITEM_BYTES, MAX_PUT_ITEMS, MAX_QUERY_LIMIT, MAX_REQUEST_BYTES};
pub use drive::{MAX_CHUNK_BYTES, MAX_FILE_BYTES, MAX_NAMES};
use files::FileStore;
use store::{ItemStore, SqliteStore};
pub use transfer::{Format, Imported, Moved, export, import};

/// The host Deta's Base clients send their requests to.
pub const BASE_HOST: &str = "database.deta.sh";
/// The host Deta's Drive clients send their requests to.
pub const DRIVE_HOST: &str = "drive.deta.sh";
/// Where the owner's browser reaches Base: `/__space/v0/base/{base}/...`.
pub const BASE_PATH: &str = "/__space/v0/base/";
/// Where the owner's browser reaches Drive: `/__space/v0/drive/{drive}/...`.
pub const DRIVE_PATH: &str = "/__space/v0/drive/";

/// The owner's path after its prefix, without the `v1/{project}/` that Deta's JavaScript SDK
/// puts there in a browser (`/__space/v0/base/v1/dummy/{base}/items`): `{name}/...` either way.
/// A Base or Drive named `v1` keeps its name: after `v1/` comes an operation, not a project.
fn without_project(rest: &str) -> &str {
    let Some(after) = rest.strip_prefix("v1/") else {
        return rest;
    };
    let operation = |segment: &str| matches!(segment, "items" | "query" | "files" | "uploads");
    match after.split_once('/') {
        Some((project, remainder)) if !operation(project) && !remainder.is_empty() => remainder,
        _ => rest,
    }
}

/// Which of the two services a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Base,
    Drive,
}

impl Service {
    /// The service Deta served at `host`, if any.
    pub(crate) fn at_host(host: &str) -> Option<Self> {
        match host {
            BASE_HOST => Some(Self::Base),
            DRIVE_HOST => Some(Self::Drive),
            _ => None,
        }
    }

    /// The service the owner's `path` is for, and the rest of the path after its prefix.
    pub(crate) fn at_path(path: &str) -> Option<(Self, &str)> {
        path.strip_prefix(BASE_PATH)
            .map(|rest| (Self::Base, without_project(rest)))
            .or_else(|| {
                path.strip_prefix(DRIVE_PATH)
                    .map(|rest| (Self::Drive, without_project(rest)))
            })
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Drive => "drive",
        }
    }
}

/// Whether `item` matches the Base query `query` (a request's `query`, `null` for none), or why
/// the query is refused: what `POST .../query` runs on each item; public for the fuzz targets.
#[doc(hidden)]
pub fn query_matches(query: &Value, item: &serde_json::Map<String, Value>) -> Result<bool, String> {
    Ok(query::matches(&query::parse_query(Some(query))?, item))
}

/// The file of the embedded store, in the app's state folder.
pub const DATA_FILE: &str = "data.sqlite3";
/// Characters a base name may have: Deta's names were short words.
const MAX_BASE_NAME: usize = 64;

/// One app's data service: its store and who may use it.
pub(crate) struct Data {
    items: Arc<dyn ItemStore>,
    files: Arc<dyn FileStore>,
    project_id: String,
    /// Every Micro's `DETA_PROJECT_KEY`: any of them opens the app's data.
    keys: Vec<String>,
    /// Bytes the store may take ([`crate::Limits::data_bytes`]).
    limit: u64,
    /// Room for Drive files in memory, in KiB ([`MAX_FILE_BYTES_IN_MEMORY`]).
    files_in_memory: Arc<tokio::sync::Semaphore>,
    /// Room for request bodies in memory, in KiB ([`MAX_REQUEST_BYTES_IN_MEMORY`]).
    bodies_in_memory: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Data")
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// A response of the data service.
pub(crate) type DataResponse = http::Response<DataBody>;

/// Bytes of Drive files held in memory at once, all of an app's downloads and upload finishes
/// together (each file is read whole, up to [`MAX_FILE_BYTES`]): the next waits for room, so a
/// Micro that downloads its largest files in parallel cannot push the host's memory up with
/// them. A download holds its room until its body is dropped (read, or its execution over).
pub const MAX_FILE_BYTES_IN_MEMORY: u64 = 512 * 1024 * 1024;

/// Bytes of data request bodies held in memory at once, all of an app's Base operations and
/// Drive requests together (each body is read whole, up to [`MAX_REQUEST_BYTES`] or
/// [`MAX_CHUNK_BYTES`]): the next waits for room. A body counts at its declared length, or at
/// its limit if it declares none, from before its first byte is read until its operation is
/// answered. Without it, executions sending large bodies at once (or one execution sending
/// many) could make the host hold many copies of their own bounded memory.
pub const MAX_REQUEST_BYTES_IN_MEMORY: u64 = 256 * 1024 * 1024;

/// The body of a data response: its bytes, and the room in memory a file holds.
pub(crate) struct DataBody {
    bytes: Full<Bytes>,
    /// Given back when the body is dropped.
    _room: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Body for DataBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.bytes).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.bytes.size_hint()
    }
}

impl Data {
    /// The data of an app whose state folder is `state`, open to these project keys.
    pub(crate) fn open(
        state: &crate::settings::state::StateDir,
        project_id: String,
        keys: Vec<String>,
        limit: u64,
    ) -> anyhow::Result<Self> {
        let store = Arc::new(SqliteStore::open(&state.path().join(DATA_FILE))?);
        Ok(Self {
            items: Arc::clone(&store) as Arc<dyn ItemStore>,
            files: store,
            project_id,
            keys,
            limit,
            files_in_memory: room_for(MAX_FILE_BYTES_IN_MEMORY),
            bodies_in_memory: room_for(MAX_REQUEST_BYTES_IN_MEMORY),
        })
    }

    /// Whether `key` is one of this app's project keys (compared in constant time).
    fn knows(&self, key: &[u8]) -> bool {
        self.keys.iter().fold(false, |found, k| {
            found | bool::from(k.as_bytes().ct_eq(key))
        })
    }

    /// Answers a request a Micro sent to [`BASE_HOST`] or [`DRIVE_HOST`]:
    /// `/v1/{project_id}/{name}/...` with its key in `X-API-Key`.
    pub(crate) async fn answer_micro<B>(
        &self,
        service: Service,
        request: http::Request<B>,
    ) -> DataResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = request
            .headers()
            .get("x-api-key")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let path = request.uri().path().to_string();
        let Some(rest) = path
            .strip_prefix("/v1/")
            .and_then(|rest| rest.strip_prefix(self.project_id.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|_| self.knows(&key))
        else {
            tracing::warn!(error.type = "auth", %path, "{} request refused: wrong project or key", service.noun());
            return respond(base::error(401, "Unauthorized"));
        };
        let rest = rest.to_string();
        self.serve(service, request, &rest).await
    }

    /// Answers the owner's request for `/__space/v0/{base,drive}/{name}/...` (already
    /// authenticated).
    pub(crate) async fn answer_owner<B>(&self, request: http::Request<B>) -> DataResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_string();
        let Some((service, rest)) = Service::at_path(&path) else {
            return respond(base::error(404, "not a data path"));
        };
        let rest = rest.to_string();
        self.serve(service, request, &rest).await
    }

    /// Checks the base or drive name and routes the rest to its operation.
    async fn serve<B>(
        &self,
        service: Service,
        request: http::Request<B>,
        rest: &str,
    ) -> DataResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (name, operation) = rest.split_once('/').unwrap_or((rest, ""));
        let name = decode(name);
        if !is_name(&name) {
            return respond(base::error(
                400,
                format!(
                    "`{name}` is not a {} name: up to {MAX_BASE_NAME} letters, digits, `_` and `-`",
                    service.noun()
                ),
            ));
        }
        match service {
            Service::Base => self.base(request, name, operation).await,
            Service::Drive => self.drive(request, name, operation).await,
        }
    }

    /// Answers one Drive operation. One that holds a whole file in memory (a download, the
    /// finish of a chunked upload) first waits for room under [`MAX_FILE_BYTES_IN_MEMORY`]; a
    /// download keeps its room until its body is dropped.
    async fn drive<B>(
        &self,
        request: http::Request<B>,
        drive: String,
        operation: &str,
    ) -> DataResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        // The body's room is held until the operation is answered.
        let declared = declared_length(&parts.headers);
        let room = &self.bodies_in_memory;
        let (body, _body_room) = match read(body, declared, MAX_CHUNK_BYTES, room).await {
            Ok(read) => read,
            Err(answer) => return respond(answer),
        };
        let writes = matches!(parts.method, Method::POST | Method::PATCH);
        let request = drive::DriveRequest {
            project_id: self.project_id.clone(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            operation: operation.to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            method: parts.method,
            body,
        };
        let files = Arc::clone(&self.files);
        let items = Arc::clone(&self.items);
        let limit = self.limit;
        let holds = request.holds();
        let sized = if matches!(holds, drive::Holds::Nothing) {
            0
        } else {
            let files = Arc::clone(&files);
            let drive = drive.clone();
            tokio::task::spawn_blocking(move || drive::held_bytes(files.as_ref(), &drive, &holds))
                .await
                .unwrap_or(0)
        };
        let room = match take_room(&self.files_in_memory, sized).await {
            Ok(room) => room,
            Err(answer) => return respond(answer),
        };
        let answered = tokio::task::spawn_blocking(move || {
            if writes && let Err(refusal) = check_room(items.as_ref(), limit, request.body.len()) {
                return drive::Answer::from(refusal);
            }
            drive::serve(files.as_ref(), &drive, &request)
        })
        .await;
        match answered {
            Ok(drive::Answer::Json(status, body)) => respond((status, body)),
            Ok(drive::Answer::File(content_type, data)) => {
                let mut response = http::Response::new(DataBody {
                    bytes: Full::new(Bytes::from(data)),
                    _room: room,
                });
                if let Ok(value) = http::HeaderValue::from_str(&content_type) {
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, value);
                }
                response
            }
            Err(error) => {
                tracing::error!(error.type = "data", "drive operation failed: {error}");
                respond(base::error(
                    500,
                    "the operation failed; see the runtime's log",
                ))
            }
        }
    }

    /// Answers one Base operation.
    async fn base<B>(
        &self,
        request: http::Request<B>,
        base: String,
        operation: &str,
    ) -> DataResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = request.method().clone();
        let route = match (operation.split_once('/'), operation) {
            (None, "items") if method == Method::PUT => Route::Put,
            (None, "items") if method == Method::POST => Route::Insert,
            (None, "query") if method == Method::POST => Route::Query,
            (Some(("items", key)), _) if !key.is_empty() => match method {
                Method::GET => Route::Get(decode(key)),
                Method::DELETE => Route::Delete(decode(key)),
                Method::PATCH => Route::Update(decode(key)),
                _ => {
                    return respond(base::error(
                        405,
                        format!("{method} is not a Base operation on an item"),
                    ));
                }
            },
            _ => {
                return respond(base::error(
                    404,
                    format!("{method} `{operation}` is not a Base operation"),
                ));
            }
        };
        // The body's room is held until the operation is answered: its parsed value is as large.
        let (body, size, _body_room) = match route {
            Route::Put | Route::Insert | Route::Query | Route::Update(_) => {
                let declared = declared_length(request.headers());
                match read_json(request.into_body(), declared, &self.bodies_in_memory).await {
                    Ok(read) => read,
                    Err(answer) => return respond(answer),
                }
            }
            Route::Get(_) | Route::Delete(_) => (Value::Null, 0, None),
        };
        let store = Arc::clone(&self.items);
        let limit = self.limit;
        let answered = tokio::task::spawn_blocking(move || {
            let store = store.as_ref();
            let writes = matches!(route, Route::Put | Route::Insert | Route::Update(_));
            if writes && let Err(refusal) = check_room(store, limit, size) {
                return refusal;
            }
            match &route {
                Route::Put => base::put(store, &base, &body),
                Route::Insert => base::insert(store, &base, &body),
                Route::Query => base::query(store, &base, &body),
                Route::Get(key) => base::get(store, &base, key),
                Route::Delete(key) => base::delete(store, &base, key),
                Route::Update(key) => base::update(store, &base, key, &body),
            }
        })
        .await;
        match answered {
            Ok(answer) => respond(answer),
            Err(error) => {
                tracing::error!(error.type = "data", "base operation failed: {error}");
                respond(base::error(
                    500,
                    "the operation failed; see the runtime's log",
                ))
            }
        }
    }
}

/// Whether `name` may name a base or a drive: 1 to 64 letters, digits, `_` and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_BASE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A Base operation and its key.
enum Route {
    Put,
    Insert,
    Query,
    Get(String),
    Delete(String),
    Update(String),
}

/// A path segment, percent-decoded.
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// Room in memory for `bytes` at once, counted in KiB.
fn room_for(bytes: u64) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        usize::try_from(bytes / 1024).unwrap_or(usize::MAX),
    ))
}

/// Waits for `bytes` of `room` (a [`room_for`]), held until the permit is dropped; nothing is
/// taken for no bytes.
async fn take_room(
    room: &Arc<tokio::sync::Semaphore>,
    bytes: u64,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, base::Answer> {
    if bytes == 0 {
        return Ok(None);
    }
    let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    match Arc::clone(room).acquire_many_owned(kib).await {
        Ok(held) => Ok(Some(held)),
        Err(_) => Err(base::error(500, "the data service is closing")),
    }
}

/// The length a request's `content-length` declares. A guest's body cannot pass it (wasi-http
/// stops the write) and a client's cannot either (hyper reads no further); [`read`] never reads
/// past it anyway.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads a body of at most `limit` bytes, once `room` (KiB, [`MAX_REQUEST_BYTES_IN_MEMORY`])
/// has room for it: for its declared length (its exact size hint, or else `declared`), or for
/// `limit` if it declares none. Returns the bytes and the room they hold.
async fn read<B>(
    body: B,
    declared: Option<u64>,
    limit: usize,
    room: &Arc<tokio::sync::Semaphore>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), base::Answer>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let past_limit = || {
        base::error(
            413,
            format!("the request body is past the limit of {limit} bytes"),
        )
    };
    let declared = body.size_hint().exact().or(declared);
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(past_limit());
    }
    let counted = declared.map_or(limit, |len| len as usize);
    let held = take_room(room, counted as u64).await?;
    match Limited::new(body, counted).collect().await {
        Ok(collected) => Ok((collected.to_bytes(), held)),
        Err(error) if error.is::<http_body_util::LengthLimitError>() && counted == limit => {
            Err(past_limit())
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(base::error(
            400,
            format!("the request body is longer than the {counted} bytes it declared"),
        )),
        Err(error) => Err(base::error(
            400,
            format!("the request body broke off: {error}"),
        )),
    }
}

/// Reads a JSON body of at most [`MAX_REQUEST_BYTES`] (as [`read`] does); returns it with its
/// size in bytes and the room it holds.
async fn read_json<B>(
    body: B,
    declared: Option<u64>,
    room: &Arc<tokio::sync::Semaphore>,
) -> Result<(Value, usize, Option<tokio::sync::OwnedSemaphorePermit>), base::Answer>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (bytes, held) = read(body, declared, MAX_REQUEST_BYTES, room).await?;
    serde_json::from_slice(&bytes)
        .map(|value| (value, bytes.len(), held))
        .map_err(|error| base::error(400, format!("the request body is not JSON: {error}")))
}

/// Refuses a write of `incoming` bytes that would take the app's data past `limit`: 507, with
/// what to do. Checked before each write: writes in flight at the same moment can pass the
/// limit by their own size, no more. Reads and deletes are never refused, so an app at its
/// limit can make room.
fn check_room(store: &dyn ItemStore, limit: u64, incoming: usize) -> Result<(), base::Answer> {
    let used = store.used_bytes().map_err(|error| {
        tracing::error!(error.type = "data", "cannot measure the app's data: {error:#}");
        base::error(500, "the operation failed; see the runtime's log")
    })?;
    if used.saturating_add(incoming as u64) <= limit {
        return Ok(());
    }
    tracing::warn!(
        error.type = "data-limit",
        used,
        incoming,
        limit,
        "a data write refused: the app's data is at its limit"
    );
    Err(base::error(
        507,
        format!(
            "the app's data is at its limit ({used} of {limit} bytes used): delete items or \
             files to make room, or ask the operator to raise --data-limit"
        ),
    ))
}

fn respond((status, body): base::Answer) -> DataResponse {
    let mut response = http::Response::new(DataBody {
        bytes: Full::new(Bytes::from(body.to_string())),
        _room: None,
    });
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_path_with_or_without_the_sdks_project() {
        let at = |path| Service::at_path(path);
        assert_eq!(
            at("/__space/v0/base/notes/items"),
            Some((Service::Base, "notes/items"))
        );
        assert_eq!(
            at("/__space/v0/base/v1/dummy/notes/items/a"),
            Some((Service::Base, "notes/items/a"))
        );
        assert_eq!(
            at("/__space/v0/drive/v1/dummy/photos/files?x"),
            Some((Service::Drive, "photos/files?x"))
        );
        // A Base named `v1` is still one.
        assert_eq!(
            at("/__space/v0/base/v1/items"),
            Some((Service::Base, "v1/items"))
        );
        assert_eq!(
            at("/__space/v0/base/v1/query"),
            Some((Service::Base, "v1/query"))
        );
        assert_eq!(
            at("/__space/v0/drive/v1/files"),
            Some((Service::Drive, "v1/files"))
        );
    }

    fn owner(method: Method, path: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A body that sends `bytes` in one frame and ends, declaring `declared` (or nothing) as its
    /// length; with `bytes` `None` it never sends anything.
    struct Declaring {
        bytes: Option<Bytes>,
        declared: Option<u64>,
    }

    impl Body for Declaring {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            match self.bytes.as_mut() {
                None => std::task::Poll::Pending,
                Some(bytes) if bytes.is_empty() => std::task::Poll::Ready(None),
                Some(bytes) => {
                    let frame = http_body::Frame::data(std::mem::take(bytes));
                    std::task::Poll::Ready(Some(Ok(frame)))
                }
            }
        }

        fn size_hint(&self) -> http_body::SizeHint {
            self.declared.map_or_else(
                http_body::SizeHint::default,
                http_body::SizeHint::with_exact,
            )
        }
    }

    fn put(body: Declaring) -> http::Request<Declaring> {
        http::Request::builder()
            .method(Method::PUT)
            .uri("/__space/v0/base/b/items")
            .body(body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn open_data(dir: &tempfile::TempDir) -> Data {
        let state =
            crate::settings::state::StateDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        Data::open(&state, "p".into(), Vec::new(), u64::MAX).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn text(response: DataResponse) -> (u16, String) {
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_request_body_waits_while_others_hold_the_room_for_bodies() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut data = open_data(&dir);
        // Room for one undeclared body (counted at the limit) and 100 KiB more.
        let room = MAX_REQUEST_BYTES / 1024 + 100;
        data.bodies_in_memory = Arc::new(tokio::sync::Semaphore::new(room));
        let held = Arc::clone(&data.bodies_in_memory)
            .acquire_many_owned(200)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let item = Bytes::from_static(br#"{"items": [{"key": "a", "n": 1}]}"#);
        // A body that declares its length counts at that length, and fits in what is left...
        let declared = data
            .answer_owner(put(Declaring {
                bytes: Some(item.clone()),
                declared: Some(item.len() as u64),
            }))
            .await;
        assert_eq!(text(declared).await.0, 207);
        // ...and so does one whose `content-length` declares it (a guest's body: no size hint)...
        let mut by_header = put(Declaring {
            bytes: Some(item.clone()),
            declared: None,
        });
        by_header
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, item.len().into());
        assert_eq!(text(data.answer_owner(by_header).await).await.0, 207);
        // ...one that declares nothing counts at the limit, and waits for the room held.
        let undeclared = data.answer_owner(put(Declaring {
            bytes: Some(item.clone()),
            declared: None,
        }));
        tokio::pin!(undeclared);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut undeclared)
                .await
                .is_err(),
            "a body without a length waits while others hold the room"
        );
        drop(held);
        assert_eq!(text(undeclared.await).await.0, 207);
        assert_eq!(
            data.bodies_in_memory.available_permits(),
            room,
            "answered operations give their room back"
        );
    }

    #[tokio::test]
    async fn a_body_past_the_limit_by_its_length_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = open_data(&dir);
        // It never sends a byte: reading it would hang.
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            data.answer_owner(put(Declaring {
                bytes: None,
                declared: Some(MAX_REQUEST_BYTES as u64 + 1),
            })),
        )
        .await
        .unwrap_or_else(|_| panic!("the body was read instead of refused by its length"));
        assert_eq!(
            text(refused).await,
            (
                413,
                format!(
                    r#"{{"errors":["the request body is past the limit of {MAX_REQUEST_BYTES} bytes"]}}"#
                )
            )
        );
    }

    #[tokio::test]
    async fn a_body_longer_than_it_declared_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = open_data(&dir);
        let refused = data
            .answer_owner(put(Declaring {
                bytes: Some(Bytes::from_static(br#"{"items": [{"key": "a"}]}"#)),
                declared: Some(4),
            }))
            .await;
        assert_eq!(
            text(refused).await,
            (
                400,
                r#"{"errors":["the request body is longer than the 4 bytes it declared"]}"#.into()
            )
        );
        assert_eq!(
            data.bodies_in_memory.available_permits(),
            usize::try_from(MAX_REQUEST_BYTES_IN_MEMORY / 1024).unwrap_or(usize::MAX)
        );
    }

    #[tokio::test]
    async fn a_download_waits_while_others_hold_the_room_for_files() {
        static FILE: [u8; 60 * 1024] = [b'x'; 60 * 1024];
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state =
            crate::settings::state::StateDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut data =
            Data::open(&state, "p".into(), Vec::new(), u64::MAX).unwrap_or_else(|e| panic!("{e}"));
        // Room for 100 KiB of files: one 60 KiB download at a time.
        data.files_in_memory = Arc::new(tokio::sync::Semaphore::new(100));
        for name in ["a", "b"] {
            let path = format!("/__space/v0/drive/d/files?name={name}");
            let stored = data.answer_owner(owner(Method::POST, &path, &FILE)).await;
            assert_eq!(stored.status(), 201);
        }
        let download = |name: &str| {
            owner(
                Method::GET,
                &format!("/__space/v0/drive/d/files/download?name={name}"),
                b"",
            )
        };
        let first = data.answer_owner(download("a")).await;
        assert_eq!(first.status(), 200);
        let second = data.answer_owner(download("b"));
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut second)
                .await
                .is_err(),
            "the second download waits while the first body holds its room"
        );
        drop(first);
        let second = second.await;
        assert_eq!(second.status(), 200);
        let bytes = second
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        assert_eq!(bytes.len(), FILE.len());
        // What other operations hold is nothing: a list does not wait.
        let _held = data.answer_owner(download("a")).await;
        let list = data
            .answer_owner(owner(Method::GET, "/__space/v0/drive/d/files", b""))
            .await;
        assert_eq!(list.status(), 200);
    }
}
