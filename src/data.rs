//! App data: Deta Base and Drive, answered by the runtime itself. A Micro reaches them as it
//! reached Deta, through `https://database.deta.sh/v1/{project_id}/{base}/...` and
//! `https://drive.deta.sh/v1/{project_id}/{drive}/...` with its `DETA_PROJECT_KEY` (such requests
//! never leave the machine), and the owner's browser at `/__space/v0/base/{base}/...` and
//! `/__space/v0/drive/{drive}/...`. Items and files live in an [`ItemStore`](store::ItemStore)
//! and a [`FileStore`](files::FileStore): by default SQLite in the app's state folder, every
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
pub use transfer::{Moved, export, import};

/// The host Deta's Base clients send their requests to.
pub const BASE_HOST: &str = "database.deta.sh";
/// The host Deta's Drive clients send their requests to.
pub const DRIVE_HOST: &str = "drive.deta.sh";
/// Where the owner's browser reaches Base: `/__space/v0/base/{base}/...`.
pub const BASE_PATH: &str = "/__space/v0/base/";
/// Where the owner's browser reaches Drive: `/__space/v0/drive/{drive}/...`.
pub const DRIVE_PATH: &str = "/__space/v0/drive/";

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
            .map(|rest| (Self::Base, rest))
            .or_else(|| {
                path.strip_prefix(DRIVE_PATH)
                    .map(|rest| (Self::Drive, rest))
            })
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Drive => "drive",
        }
    }
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
        state: &crate::state::StateDir,
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
            files_in_memory: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(MAX_FILE_BYTES_IN_MEMORY / 1024).unwrap_or(usize::MAX),
            )),
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
        let body = match read(body, MAX_CHUNK_BYTES).await {
            Ok(body) => body,
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
        let room = if sized == 0 {
            None
        } else {
            let kib = u32::try_from(sized.div_ceil(1024)).unwrap_or(u32::MAX);
            match Arc::clone(&self.files_in_memory)
                .acquire_many_owned(kib)
                .await
            {
                Ok(room) => Some(room),
                Err(_) => return respond(base::error(500, "the data service is closing")),
            }
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
        let (body, size) = match route {
            Route::Put | Route::Insert | Route::Query | Route::Update(_) => {
                match read_json(request.into_body()).await {
                    Ok(read) => read,
                    Err(answer) => return respond(answer),
                }
            }
            Route::Get(_) | Route::Delete(_) => (Value::Null, 0),
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

/// Reads a body of at most `limit` bytes.
async fn read<B>(body: B, limit: usize) -> Result<Bytes, base::Answer>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(base::error(
            413,
            format!("the request body is past the limit of {limit} bytes"),
        )),
        Err(error) => Err(base::error(
            400,
            format!("the request body broke off: {error}"),
        )),
    }
}

/// Reads a JSON body of at most [`MAX_REQUEST_BYTES`]; returns it with its size in bytes.
async fn read_json<B>(body: B) -> Result<(Value, usize), base::Answer>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = read(body, MAX_REQUEST_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map(|value| (value, bytes.len()))
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

    fn owner(method: Method, path: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_download_waits_while_others_hold_the_room_for_files() {
        static FILE: [u8; 60 * 1024] = [b'x'; 60 * 1024];
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = crate::state::StateDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
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
