//! The index of a static Micro's folder: every file it serves, by URL path, with its type, ETag
//! and (if small) its bytes and their gzip'd form, read once.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::HeaderValue;
use sha2::{Digest as _, Sha256};

/// The most files a static Micro serves: as many as a bundle may hold.
pub const MAX_FILES: usize = 20_000;
/// Files up to this size are held in memory (with their gzip'd form); larger ones are read
/// from disk for each request.
pub const MAX_CACHED_FILE: u64 = 1024 * 1024;
/// The most bytes of files one static Micro holds in memory; past it, files are read from disk.
pub const MAX_CACHED_BYTES: u64 = 64 * 1024 * 1024;
/// Files smaller than this are not worth compressing.
const MIN_GZIP_BYTES: usize = 256;

/// The files of a static Micro.
pub(super) struct Index {
    /// Each file by its path relative to the folder, `/`-separated, without a leading `/`.
    pub(super) files: HashMap<String, Arc<Entry>>,
}

/// One file.
pub(super) struct Entry {
    /// Where it is on disk.
    pub(super) path: PathBuf,
    /// Its length in bytes.
    pub(super) len: u64,
    /// `Content-Type`, from its extension.
    pub(super) content_type: HeaderValue,
    /// A strong ETag: a hash of its bytes.
    pub(super) etag: HeaderValue,
    /// Its bytes, if small enough to hold.
    pub(super) content: Option<Bytes>,
    /// Its bytes gzip'd, if it is text held in memory and compressing saves a tenth or more.
    pub(super) gzip: Option<Bytes>,
}

impl Index {
    /// Reads every file under `root`: hidden ones (a name starting with `.`, but for
    /// `.well-known`) are left out, and so are links that lead out of `root`, each said in the
    /// log. Blocking.
    pub(super) fn read(micro: &str, root: &Path) -> anyhow::Result<Self> {
        let root = root.canonicalize().with_context(|| {
            format!(
                "micro `{micro}`: cannot open the folder it serves, `{}`",
                root.display()
            )
        })?;
        let mut files = HashMap::new();
        let mut cached = 0u64;
        let mut visited = HashSet::from([root.clone()]);
        let mut folders = vec![(root.clone(), String::new())];
        while let Some((folder, prefix)) = folders.pop() {
            let entries = std::fs::read_dir(&folder)
                .with_context(|| format!("micro `{micro}`: cannot read `{}`", folder.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| {
                    format!("micro `{micro}`: cannot read `{}`", folder.display())
                })?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    tracing::warn!(micro, file = %entry.path().display(), "static file left out: its name is not UTF-8");
                    continue;
                };
                if name.starts_with('.') && name != ".well-known" {
                    continue;
                }
                let key = join(&prefix, &name);
                // A link is followed only to a place inside the folder.
                let Ok(real) = entry.path().canonicalize() else {
                    tracing::warn!(micro, file = %key, "static file left out: a link that leads nowhere");
                    continue;
                };
                if !real.starts_with(&root) {
                    tracing::warn!(micro, file = %key, "static file left out: a link that leads out of the folder");
                    continue;
                }
                let metadata = std::fs::metadata(&real)
                    .with_context(|| format!("micro `{micro}`: cannot read `{key}`"))?;
                if metadata.is_dir() {
                    if visited.insert(real.clone()) {
                        folders.push((real, key));
                    }
                    continue;
                }
                if !metadata.is_file() {
                    continue;
                }
                if files.len() == MAX_FILES {
                    bail!(
                        "micro `{micro}`: the folder it serves has more than {MAX_FILES} files: \
                         serve the build's output folder (`serve`), not its sources"
                    );
                }
                let hold = metadata.len() <= MAX_CACHED_FILE
                    && cached + metadata.len() <= MAX_CACHED_BYTES;
                let entry = Entry::read(&real, metadata.len(), hold)
                    .with_context(|| format!("micro `{micro}`: cannot read `{key}`"))?;
                if hold {
                    cached += entry.len + entry.gzip.as_ref().map_or(0, |g| g.len() as u64);
                }
                files.insert(key, Arc::new(entry));
            }
        }
        tracing::debug!(micro, files = files.len(), cached, "static files read");
        Ok(Self { files })
    }
}

impl Entry {
    /// Reads the file at `path`, `len` bytes long, holding its bytes if `hold`.
    fn read(path: &Path, len: u64, hold: bool) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut file = std::fs::File::open(path)?;
        let mut content = Vec::new();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            if hold {
                content.extend_from_slice(&buffer[..read]);
            }
        }
        let digest = hasher.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let text = mime.type_() == mime_guess::mime::TEXT
            || matches!(
                mime.essence_str(),
                "application/javascript"
                    | "application/json"
                    | "application/xml"
                    | "application/manifest+json"
                    | "application/wasm"
                    | "image/svg+xml"
            );
        let content_type = if mime.type_() == mime_guess::mime::TEXT
            || mime.essence_str() == "application/javascript"
        {
            format!("{}; charset=utf-8", mime.essence_str())
        } else {
            mime.essence_str().to_string()
        };
        let gzip = (hold && text && content.len() >= MIN_GZIP_BYTES)
            .then(|| gzip(&content))
            .flatten()
            .filter(|g| g.len() * 10 <= content.len() * 9);
        Ok(Self {
            path: path.to_path_buf(),
            len: if hold { content.len() as u64 } else { len },
            content_type: HeaderValue::from_str(&content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            etag,
            content: hold.then(|| Bytes::from(content)),
            gzip: gzip.map(Bytes::from),
        })
    }
}

fn gzip(content: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(content).ok()?;
    encoder.finish().ok()
}

/// `prefix/name`, or `name` at the top.
pub(super) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// The index key a URL path names: percent-decoded, `/`-separated, without empty or `.`
/// segments; `None` for what names no file (`..`, a NUL, a backslash, bytes that are not UTF-8).
pub(super) fn key(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.contains(['\0', '\\']) {
        return None;
    }
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            segment => segments.push(segment),
        }
    }
    Some(segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_paths_and_what_names_no_file() {
        assert_eq!(key("/").as_deref(), Some(""));
        assert_eq!(key("/a/b.css").as_deref(), Some("a/b.css"));
        assert_eq!(key("//a/./b%20c.txt").as_deref(), Some("a/b c.txt"));
        for bad in ["/../x", "/a/%2e%2e/x", "/a%00", "/a%5cb", "/%ff", "/a/.."] {
            assert_eq!(key(bad), None, "{bad}");
        }
    }

    #[test]
    fn hidden_files_and_links_out_are_left_out() {
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(outside.path().join("secret.txt"), "secret")
            .unwrap_or_else(|e| panic!("{e}"));
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            let path = root.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(root.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("index.html", &"<p>hello</p>".repeat(100));
        write("css/site.css", "body{}");
        write(".env", "KEY=1");
        write(".git/config", "x");
        write(".well-known/security.txt", "contact");
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.path().join("out.txt"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(outside.path(), root.path().join("outdir"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(
            root.path().join("index.html"),
            root.path().join("home.html"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(root.path(), root.path().join("css/loop"))
            .unwrap_or_else(|e| panic!("{e}"));
        let index = Index::read("web", root.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut keys: Vec<&str> = index.files.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                ".well-known/security.txt",
                "css/site.css",
                "home.html",
                "index.html"
            ]
        );
        let page = &index.files["index.html"];
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(
            page.gzip.as_ref().is_some_and(|g| g.len() < 200),
            "compressed"
        );
        assert_eq!(page.etag, index.files["home.html"].etag);
        assert_ne!(page.etag, index.files["css/site.css"].etag);
        assert_eq!(
            index.files["css/site.css"].gzip, None,
            "too small to compress"
        );
    }
}
