//! The server's side: an uploaded bundle unpacked entry by entry as it streams, each entry
//! checked before it is written, and nothing left behind when one is refused.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::GzDecoder;

use super::{BundleError, IGNORE_FILE, MAX_ENTRIES, MAX_RATIO, MAX_UNPACKED_BYTES, Unpacked};
use crate::spec::manifest::MANIFEST_FILE;

/// Bytes a bundle may unpack to before its ratio to its compressed size is checked: small
/// bundles, mostly headers and padding, compress best.
const RATIO_GRACE: u64 = 1024 * 1024;
/// Bytes the tar may hold between two entries' contents: a header and the long-name or PAX
/// records before it (which the tar reader holds in memory), or what follows the last entry.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// Longest path an entry may have, in bytes.
const MAX_PATH_BYTES: usize = 1024;
/// Longest name of one file or folder, in bytes: most filesystems' own limit.
const MAX_NAME_BYTES: usize = 255;
/// Longest an entry's path is shown in an error, in characters.
const MAX_SHOWN_CHARS: usize = 200;
/// Bytes copied at a time from the archive to a file.
const CHUNK: usize = 64 * 1024;

/// What a bundle that is not one gets.
const NOT_A_BUNDLE: &str = "the upload is not a gzip'd tar; make bundles with `micros push`";
/// What a bundle cut short gets.
const TRUNCATED: &str = "the bundle ends in the middle of an entry; upload it again, whole";

/// The limits a bundle is unpacked under: the constants', or smaller ones in tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Entries, files and folders, the folders a path implies included.
    pub(super) entries: usize,
    /// Bytes of entries' contents.
    pub(super) bytes: u64,
    /// Times larger than the bytes read of the upload the tar may be.
    pub(super) ratio: u64,
    /// Bytes of tar read before the ratio applies.
    pub(super) ratio_grace: u64,
}

impl Limits {
    /// The limits of every upload.
    pub(super) const DEFAULT: Self = Self {
        entries: MAX_ENTRIES,
        bytes: MAX_UNPACKED_BYTES,
        ratio: MAX_RATIO,
        ratio_grace: RATIO_GRACE,
    };
}

/// Unpacks a gzip'd tar read from `reader` into the folder `into`, which must not exist yet
/// (its parent is made if need be): entries are checked one by one as they stream, before each
/// is written; on any refusal nothing is left at `into` (a fresh temporary sibling folder is used
/// and renamed into place only once the whole bundle passed). Files are written 0644 and
/// folders 0755, whatever the archive says.
pub(crate) fn unpack(reader: impl Read, into: &Path) -> Result<Unpacked, BundleError> {
    unpack_with(reader, into, Limits::DEFAULT)
}

/// [`unpack`] under `limits`.
pub(super) fn unpack_with(
    reader: impl Read,
    into: &Path,
    limits: Limits,
) -> Result<Unpacked, BundleError> {
    if into.symlink_metadata().is_ok() {
        return Err(BundleError::bundle(format!(
            "cannot unpack into `{}`: it already exists; unpack into a new folder",
            into.display()
        )));
    }
    let staging = Staging::create(into)?;
    let unpacked = Unpacker::new(staging.path.clone(), limits).run(reader)?;
    staging.finish(into)?;
    Ok(unpacked)
}

/// The fresh folder beside `into` that a bundle is unpacked in: removed when dropped, unless it
/// was renamed into place.
struct Staging {
    /// Its path.
    path: PathBuf,
    /// Whether it became `into`.
    kept: bool,
}

/// Numbers the staging folders of this process.
static STAGING: AtomicU64 = AtomicU64::new(0);

impl Staging {
    /// Makes a folder that did not exist, beside `into`.
    fn create(into: &Path) -> Result<Self, BundleError> {
        let cannot = |e: &dyn std::fmt::Display| {
            BundleError::bundle(format!("cannot unpack into `{}`: {e}", into.display()))
        };
        let name = into
            .file_name()
            .ok_or_else(|| cannot(&"it names no folder"))?;
        let parent = match into.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| cannot(&e))?;
        loop {
            let number = STAGING.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!(
                ".{}.unpacking-{}-{number}",
                name.to_string_lossy(),
                std::process::id()
            ));
            match create_folder(&path) {
                Ok(()) => return Ok(Self { path, kept: false }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(cannot(&e)),
            }
        }
    }

    /// Renames the folder to `into`.
    fn finish(mut self, into: &Path) -> Result<(), BundleError> {
        std::fs::rename(&self.path, into).map_err(|e| {
            BundleError::bundle(format!("cannot unpack into `{}`: {e}", into.display()))
        })?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Makes the folder `path`, 0755.
fn create_folder(path: &Path) -> io::Result<()> {
    std::fs::create_dir(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Makes the file `path`, which must not exist, 0644.
fn create_file(path: &Path) -> io::Result<File> {
    let file = File::options().write(true).create_new(true).open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(file)
}

/// What the counting readers have seen, shared with the loop that reads the entries.
#[derive(Debug, Default)]
struct Meter {
    /// Bytes read of the upload.
    compressed: Cell<u64>,
    /// Bytes of tar they unpacked to.
    unpacked: Cell<u64>,
    /// While a header is read: the count of `unpacked` it may not pass.
    header_end: Cell<Option<u64>>,
    /// The limit a counting reader stopped at, if one did.
    tripped: Cell<Option<Trip>>,
}

/// A limit the counting readers enforce.
#[derive(Debug, Clone, Copy)]
enum Trip {
    /// The tar is more than `ratio` times larger than the upload.
    Ratio,
    /// A header is larger than [`MAX_HEADER_BYTES`].
    Header,
}

/// Counts the upload's bytes as the gzip decoder reads them.
struct Compressed<R> {
    /// The upload.
    inner: R,
    /// Where the count goes.
    meter: Rc<Meter>,
}

impl<R: Read> Read for Compressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter
            .compressed
            .set(self.meter.compressed.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Counts the tar's bytes as they are unpacked, and stops at a decompression bomb or an
/// oversized header.
struct Decompressed<R> {
    /// The gzip decoder.
    inner: R,
    /// Where the count goes, and which limit tripped.
    meter: Rc<Meter>,
    /// The ratio and its grace.
    limits: Limits,
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.tripped.get().is_some() {
            return Err(io::Error::other("a limit of the bundle was passed"));
        }
        let n = self.inner.read(buf)?;
        let total = self.meter.unpacked.get().saturating_add(n as u64);
        self.meter.unpacked.set(total);
        let bomb = total > self.limits.ratio_grace
            && total
                > self
                    .meter
                    .compressed
                    .get()
                    .saturating_mul(self.limits.ratio);
        let header = self.meter.header_end.get().is_some_and(|end| total > end);
        if bomb || header {
            self.meter
                .tripped
                .set(Some(if bomb { Trip::Ratio } else { Trip::Header }));
            return Err(io::Error::other("a limit of the bundle was passed"));
        }
        Ok(n)
    }
}

/// What a path in the bundle was seen as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A file entry.
    File,
    /// A folder entry.
    Folder,
    /// A folder made because an entry's path goes through it.
    Implied,
}

/// Unpacks one bundle into its staging folder.
struct Unpacker {
    /// The staging folder.
    root: PathBuf,
    /// What the bundle may hold.
    limits: Limits,
    /// Every path written, normalised, and what it is: a path's folders are always in it.
    tree: HashMap<String, Seen>,
    /// Entries the archive gave, those not written (the top folder) included.
    listed: usize,
    /// Bytes of entries' contents read.
    bytes: u64,
    /// The buffer contents are copied through.
    buffer: Vec<u8>,
}

impl Unpacker {
    /// An unpacker into the empty folder `root`.
    fn new(root: PathBuf, limits: Limits) -> Self {
        Self {
            root,
            limits,
            tree: HashMap::new(),
            listed: 0,
            bytes: 0,
            buffer: vec![0; CHUNK],
        }
    }

    /// Reads the bundle from `reader`, writing each entry once it passed, then checks the rest
    /// of the stream (the gzip checksum among it) and that the bundle holds an app.
    fn run(mut self, reader: impl Read) -> Result<Unpacked, BundleError> {
        let meter = Rc::new(Meter::default());
        let decoder = GzDecoder::new(Compressed {
            inner: reader,
            meter: Rc::clone(&meter),
        });
        let mut archive = tar::Archive::new(Decompressed {
            inner: decoder,
            meter: Rc::clone(&meter),
            limits: self.limits,
        });
        let mut started = false;
        {
            let mut entries = archive
                .entries()
                .map_err(|e| stream_error(&meter, &self.limits, &e, None, started))?;
            loop {
                let end = meter.unpacked.get().saturating_add(MAX_HEADER_BYTES);
                meter.header_end.set(Some(end));
                let next = entries.next();
                meter.header_end.set(None);
                match next {
                    None => break,
                    Some(Err(e)) => {
                        return Err(stream_error(&meter, &self.limits, &e, None, started));
                    }
                    Some(Ok(entry)) => {
                        started = true;
                        self.entry(entry, &meter)?;
                    }
                }
            }
        }
        // What follows the last entry: the tar's end and padding, and the gzip trailer, whose
        // checksum and length are checked on reading it.
        let mut rest = archive.into_inner().take(MAX_HEADER_BYTES + 1);
        let trailing = io::copy(&mut rest, &mut io::sink())
            .map_err(|e| stream_error(&meter, &self.limits, &e, None, started))?;
        if trailing > MAX_HEADER_BYTES {
            return Err(BundleError::bundle(format!(
                "more than {MAX_HEADER_BYTES} bytes follow the end of the archive; make bundles with `micros push`"
            )));
        }
        if self.tree.get(MANIFEST_FILE) != Some(&Seen::File) {
            return Err(BundleError::bundle(format!(
                "a bundle holds an app: `{MANIFEST_FILE}` at its top; push the app's folder"
            )));
        }
        Ok(Unpacked {
            entries: self.tree.len(),
            bytes: self.bytes,
        })
    }

    /// Checks one entry and writes it.
    fn entry(
        &mut self,
        mut entry: tar::Entry<'_, impl Read>,
        meter: &Meter,
    ) -> Result<(), BundleError> {
        let raw = entry.path_bytes().into_owned();
        let shown = shown(&raw);
        let refuse = |rule: String| BundleError::entry(shown.clone(), rule);
        self.listed += 1;
        if self.listed > self.limits.entries {
            return Err(refuse(self.too_many_entries()));
        }
        let path = normalise(&raw).map_err(refuse)?;
        let kind = entry.header().entry_type();
        let is_file = kind.is_file();
        if !is_file && !kind.is_dir() {
            return Err(refuse(format!(
                "{}; only files and folders may be bundled",
                kind_name(kind)
            )));
        }
        if path.is_empty() && is_file {
            return Err(refuse("an empty path; every file needs a name".into()));
        }
        let size = entry.size();
        if self.bytes.saturating_add(size) > self.limits.bytes {
            return Err(refuse(self.too_many_bytes()));
        }
        let mut file = if path.is_empty() {
            // The top folder (`./`): it is the staging folder.
            None
        } else {
            self.place(&path, is_file).map_err(refuse)?
        };
        let mut read = 0u64;
        loop {
            let n = entry
                .read(&mut self.buffer)
                .map_err(|e| stream_error(meter, &self.limits, &e, Some(&shown), true))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            self.bytes += n as u64;
            if self.bytes > self.limits.bytes {
                return Err(refuse(self.too_many_bytes()));
            }
            if let Some(file) = &mut file {
                file.write_all(&self.buffer[..n])
                    .map_err(|e| refuse(format!("cannot be written on the server ({e})")))?;
            }
        }
        if read < size {
            return Err(refuse(TRUNCATED.into()));
        }
        Ok(())
    }

    /// Records `path` in the tree and makes it (the file, opened, if `is_file`) with the folders
    /// above it that were not made yet. The error is the rule broken.
    fn place(&mut self, path: &str, is_file: bool) -> Result<Option<File>, String> {
        let parents: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
        // The first of `parents` not seen yet: every folder above a seen one was seen too.
        let mut first_new = 0;
        for (k, &end) in parents.iter().enumerate().rev() {
            match self.tree.get(&path[..end]) {
                None => {}
                Some(Seen::File) => {
                    return Err(format!(
                        "inside `{}`, which the bundle holds as a file; bundle each path once, as a file or a folder",
                        shown(&path.as_bytes()[..end])
                    ));
                }
                Some(Seen::Folder | Seen::Implied) => {
                    first_new = k + 1;
                    break;
                }
            }
        }
        let own = self.tree.get(path).copied();
        match (own, is_file) {
            (Some(Seen::File | Seen::Folder), _) => {
                return Err("the same path twice; bundle each file once".into());
            }
            (Some(Seen::Implied), true) => {
                return Err(
                    "a file where the bundle holds a folder; bundle each path once, as a file or a folder"
                        .into(),
                );
            }
            _ => {}
        }
        let added = parents.len() - first_new + usize::from(own.is_none());
        if self.tree.len() + added > self.limits.entries {
            return Err(self.too_many_entries());
        }
        let cannot = |e: io::Error| format!("cannot be written on the server ({e})");
        for &end in &parents[first_new..] {
            let folder = &path[..end];
            create_folder(&self.root.join(folder)).map_err(cannot)?;
            self.tree.insert(folder.to_string(), Seen::Implied);
        }
        if is_file {
            let file = create_file(&self.root.join(path)).map_err(cannot)?;
            self.tree.insert(path.to_string(), Seen::File);
            Ok(Some(file))
        } else {
            if own.is_none() {
                create_folder(&self.root.join(path)).map_err(cannot)?;
            }
            self.tree.insert(path.to_string(), Seen::Folder);
            Ok(None)
        }
    }

    /// The rule of the entries' limit.
    fn too_many_entries(&self) -> String {
        format!(
            "the bundle holds more than {} files and folders; leave out what the Micros do not need in `{IGNORE_FILE}`",
            self.limits.entries
        )
    }

    /// The rule of the bytes' limit.
    fn too_many_bytes(&self) -> String {
        format!(
            "the bundle unpacks to more than {} bytes; leave out what the Micros do not need in `{IGNORE_FILE}`",
            self.limits.bytes
        )
    }
}

/// The refusal for an error of the stream, while reading `entry` if given: a limit the counting
/// readers tripped, no tar at all (nothing read yet), a cut, or a corruption.
fn stream_error(
    meter: &Meter,
    limits: &Limits,
    error: &io::Error,
    entry: Option<&str>,
    started: bool,
) -> BundleError {
    let rule = match meter.tripped.get() {
        Some(Trip::Ratio) => format!(
            "the bundle unpacks to more than {} times its compressed size, like a decompression bomb; leave such files out, or compress them in the app",
            limits.ratio
        ),
        Some(Trip::Header) => format!(
            "an entry's header takes more than {MAX_HEADER_BYTES} bytes; make bundles with `micros push`"
        ),
        None if !started => NOT_A_BUNDLE.to_string(),
        None if is_cut(error) => TRUNCATED.to_string(),
        None => format!("the bundle is corrupt ({error}); pack and upload it again"),
    };
    BundleError {
        entry: entry.map(str::to_string),
        rule,
    }
}

/// Whether a stream error is the upload ending early.
fn is_cut(error: &io::Error) -> bool {
    // The tar reader's own words for a block or a skip cut short.
    error.kind() == io::ErrorKind::UnexpectedEof
        || ["failed to read entire block", "unexpected EOF during skip"]
            .iter()
            .any(|words| error.to_string().contains(words))
}

/// The entry's path from the archive, normalised (`./a//b/` is `a/b`; the top folder is the
/// empty path), or the rule it breaks.
fn normalise(raw: &[u8]) -> Result<String, String> {
    if raw.is_empty() {
        return Err("an empty path; every entry needs a name".into());
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err("a path that is not UTF-8; rename the file".into());
    };
    if text.contains('\0') {
        return Err("a path with a NUL byte; rename the file".into());
    }
    if text.starts_with('/') {
        return Err("an absolute path; paths in a bundle are relative to the app's folder".into());
    }
    if text.len() > MAX_PATH_BYTES {
        return Err(format!(
            "a path longer than {MAX_PATH_BYTES} bytes; shorten it"
        ));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(
                    "a path with `..`; paths in a bundle stay inside the app's folder".into(),
                );
            }
            name if name.len() > MAX_NAME_BYTES => {
                return Err(format!(
                    "a name longer than {MAX_NAME_BYTES} bytes; shorten it"
                ));
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

/// What an entry of a type other than file or folder is, for its refusal.
fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "a symlink".into(),
        tar::EntryType::Link => "a hard link".into(),
        tar::EntryType::Char => "a character device".into(),
        tar::EntryType::Block => "a block device".into(),
        tar::EntryType::Fifo => "a fifo".into(),
        other => format!("an entry of type `{}`", [other.as_byte()].escape_ascii()),
    }
}

/// An entry's path as an error shows it: lossy UTF-8, shortened past [`MAX_SHOWN_CHARS`].
fn shown(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}
