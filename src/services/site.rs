//! Static Micros (`engine = "static"`): the files of a folder, served without any sandbox. The
//! folder is read once, when the app loads, into an index from URL path to file; a request is
//! answered from that index only, so no path a client sends ever reaches the filesystem.

mod index;
mod negotiate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, LOCATION, VARY,
};
use http::{Method, Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::sandbox::ResponseBody;
use index::{Entry, Index};
pub use index::{MAX_CACHED_BYTES, MAX_CACHED_FILE, MAX_FILES};

/// The page served for a folder.
pub const INDEX_FILE: &str = "index.html";
/// The page served, with 404, for a path that names no file, if the folder has one.
pub const NOT_FOUND_FILE: &str = "404.html";
/// Bytes read from disk at a time for a file not held in memory.
const READ_CHUNK: usize = 64 * 1024;

/// A static Micro's files.
pub(crate) struct Site {
    /// The Micro's name, for messages.
    name: String,
    /// The folder served.
    root: PathBuf,
    /// The files as last read; swapped whole on a reload.
    index: RwLock<Arc<Index>>,
}

/// What a request asked of a static Micro.
pub(crate) struct Asked<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path within the Micro (the Micro's own path stripped), still percent-encoded.
    pub path: &'a str,
    /// Its path as the client sent it, for a redirect to the folder's `/`.
    pub original_path: &'a str,
    /// Its query, kept by a redirect.
    pub query: Option<&'a str>,
    /// Its headers.
    pub headers: &'a HeaderMap,
}

impl Site {
    /// Reads the folder `root` of the static Micro `name`. Blocking.
    pub(crate) fn load(name: &str, root: &Path) -> anyhow::Result<Self> {
        let index = Index::read(name, root)?;
        Ok(Self {
            name: name.to_string(),
            root: root.to_path_buf(),
            index: RwLock::new(Arc::new(index)),
        })
    }

    /// Reads the folder again and swaps the new index in; on an error the old one stays.
    /// Blocking.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        let index = Index::read(&self.name, &self.root)?;
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        Ok(())
    }

    /// The Micro's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// How many files it serves.
    pub(crate) fn files(&self) -> usize {
        self.current().files.len()
    }

    fn current(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Answers one request: a file (whole, a range of it, or compressed), a redirect from a
    /// folder to its `/`, 304 for a copy the client has, 404, or 405 for a method other than
    /// GET and HEAD.
    pub(crate) async fn answer(&self, asked: &Asked<'_>) -> Response<ResponseBody> {
        if asked.method != Method::GET && asked.method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "micro `{}`: a static Micro answers GET and HEAD only\n",
                    self.name
                ),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let index = self.current();
        let Some(key) = index::key(asked.path) else {
            return self.not_found(&index, asked).await;
        };
        let folder = key.is_empty() || asked.path.ends_with('/');
        let found = if folder {
            index.files.get(&index::join(&key, INDEX_FILE))
        } else {
            index.files.get(&key)
        };
        if let Some(entry) = found {
            return self.file(entry, StatusCode::OK, asked).await;
        }
        if !folder && index.files.contains_key(&index::join(&key, INDEX_FILE)) {
            // A folder asked for without its `/`: its page's relative links need the `/`.
            let location = match asked.query {
                Some(query) => format!("{}/?{query}", asked.original_path),
                None => format!("{}/", asked.original_path),
            };
            if let Ok(location) = HeaderValue::from_str(&location) {
                let mut response = text(StatusCode::PERMANENT_REDIRECT, String::new());
                response.headers_mut().insert(LOCATION, location);
                return response;
            }
        }
        self.not_found(&index, asked).await
    }

    /// 404: the folder's `404.html` if it has one, else a line saying so.
    async fn not_found(&self, index: &Index, asked: &Asked<'_>) -> Response<ResponseBody> {
        match index.files.get(NOT_FOUND_FILE) {
            Some(page) => {
                whole(
                    page,
                    StatusCode::NOT_FOUND,
                    asked.method == Method::HEAD,
                    false,
                )
                .await
            }
            None => text(
                StatusCode::NOT_FOUND,
                format!(
                    "micro `{}`: no file at `{}`\n",
                    self.name, asked.original_path
                ),
            ),
        }
    }

    /// One file, as the request's conditions, range and encodings ask.
    async fn file(
        &self,
        entry: &Arc<Entry>,
        status: StatusCode,
        asked: &Asked<'_>,
    ) -> Response<ResponseBody> {
        let head = asked.method == Method::HEAD;
        if negotiate::none_match(asked.headers, &entry.etag) {
            let mut response = text(StatusCode::NOT_MODIFIED, String::new());
            validators(response.headers_mut(), entry);
            return response;
        }
        match negotiate::range(asked.headers, &entry.etag, entry.len) {
            negotiate::Range::Whole => {}
            negotiate::Range::Part(start, end) => {
                let length = end - start + 1;
                let mut response = Response::new(if head {
                    ResponseBody::full(Bytes::new())
                } else {
                    body(entry, start, length).await
                });
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, entry.content_type.clone());
                headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
                if let Ok(range) =
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{}", entry.len))
                {
                    headers.insert(CONTENT_RANGE, range);
                }
                validators(headers, entry);
                return response;
            }
            negotiate::Range::Unsatisfiable => {
                let mut response = text(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("micro `{}`: the range is not in the file\n", self.name),
                );
                if let Ok(range) = HeaderValue::from_str(&format!("bytes */{}", entry.len)) {
                    response.headers_mut().insert(CONTENT_RANGE, range);
                }
                return response;
            }
        }
        let gzip = entry.gzip.is_some() && negotiate::accepts_gzip(asked.headers);
        whole(entry, status, head, gzip).await
    }
}

/// The whole file (gzip'd if `gzip`), with `status`.
async fn whole(
    entry: &Arc<Entry>,
    status: StatusCode,
    head: bool,
    gzip: bool,
) -> Response<ResponseBody> {
    let (content, length) = match (&entry.gzip, gzip) {
        (Some(compressed), true) => (Some(compressed.clone()), compressed.len() as u64),
        _ => (None, entry.len),
    };
    let body = if head {
        ResponseBody::full(Bytes::new())
    } else if let Some(content) = content {
        ResponseBody::full(content)
    } else {
        body(entry, 0, entry.len).await
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, entry.content_type.clone());
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if status == StatusCode::OK {
        validators(headers, entry);
    }
    response
}

/// The headers that let a client keep and check a copy: the ETag, `Cache-Control: no-cache`
/// (use the copy after asking whether it is current: the folder may change with a release),
/// `Accept-Ranges`, and `Vary` if the file has a compressed form.
fn validators(headers: &mut HeaderMap, entry: &Entry) {
    headers.insert(ETAG, entry.etag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if entry.gzip.is_some() {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// `length` bytes of the file from `start`: from memory if it is held there, else read from
/// disk by a task of its own as the client takes them. A file that changed on disk since the
/// folder was read ends the body short, which the server reports as a cut connection.
async fn body(entry: &Arc<Entry>, start: u64, length: u64) -> ResponseBody {
    if let Some(content) = &entry.content {
        let start = start as usize;
        return ResponseBody::full(content.slice(start..start + length as usize));
    }
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let path = entry.path.clone();
    tokio::spawn(async move {
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            tracing::warn!(file = %path.display(), "a static file went missing since it was read");
            return;
        };
        if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return;
        }
        let mut left = length;
        while left > 0 {
            let mut chunk = vec![0; READ_CHUNK.min(left as usize)];
            match file.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    tracing::warn!(file = %path.display(), "a static file got shorter since it was read");
                    return;
                }
                Ok(read) => {
                    chunk.truncate(read);
                    left -= read as u64;
                    if sender.send(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    ResponseBody::channel(receiver)
}

/// A plain-text answer.
fn text(status: StatusCode, text: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
