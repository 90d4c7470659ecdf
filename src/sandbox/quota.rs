//! The `/tmp` quota of a Micro: bytes of file data and entries, counted once per Micro and shared
//! by all its executions.
//!
//! wasmtime-wasi 48 has no hook for this, and a real filesystem quota (a sized tmpfs, project
//! quotas) needs privileges a self-hosted runtime cannot count on. So the runtime keeps its own
//! books, and `filesystem.rs` puts a check in front of every way a guest can change them.
//!
//! The books count what a guest could make the disk hold:
//! - bytes: the logical size of every file, sparse or not, counted once per file (an inode), not
//!   per name, so hard links cost nothing; a file unlinked while still open keeps counting until
//!   its last handle (descriptor or stream) closes, as its blocks stay on disk until then;
//! - entries: files, folders and links, each costing an inode whatever its size.
//!
//! A growth is reserved before the write runs and refused whole if it would pass the limit, so
//! nothing is written past it. A shrink (truncation) gives bytes back at once only if no write to
//! the file may be in flight: a write stream's write lands after the call that made it returns, so
//! while a stream is open, or a write is running, bytes freed by a truncation stay counted (the
//! write landing after it would re-grow the file unseen). When the last handle of a file closes,
//! no write is in flight and its count is reconciled with its real size.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;

/// Identity of a file on the host: the stock `metadata-hash` of its device and inode, the one
/// identity wasmtime-wasi gives for both an open descriptor and a path.
pub(crate) type FileKey = (u64, u64);

/// A write, create or resize refused because it would pass a Micro's `/tmp` quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuotaExceeded {
    /// More bytes of file data than the limit.
    #[error("/tmp is full: {limit} bytes of file data")]
    Bytes {
        /// The limit in bytes.
        limit: u64,
    },
    /// More files, folders and links than the limit.
    #[error("/tmp is full: {limit} files, folders and links")]
    Entries {
        /// The limit in entries.
        limit: u64,
    },
}

/// What a Micro's `/tmp` holds by the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TmpUsage {
    /// Bytes of file data, by logical size.
    pub bytes: u64,
    /// Files, folders and links.
    pub entries: u64,
}

/// The quota of one Micro's `/tmp`, shared by its executions.
#[derive(Debug)]
pub(crate) struct TmpQuota {
    max_bytes: u64,
    max_entries: u64,
    book: Mutex<Book>,
    /// Held around every operation that adds or removes a name (create, link, rename, unlink),
    /// so that what an operation looked up before it ran is still true when it is counted.
    namespace: tokio::sync::Mutex<()>,
    /// Writes refused at the limits, for the metrics.
    refused: prometheus_client::metrics::counter::Counter,
}

#[derive(Debug, Default)]
struct Book {
    usage: TmpUsage,
    /// Files opened since the Micro was loaded (a file never opened counts as the walk at load
    /// found it). An entry stays while the file has a name, so an unlink later credits what the
    /// books hold rather than a size read before the unlink ran.
    files: HashMap<FileKey, Counted>,
}

#[derive(Debug)]
struct Counted {
    /// Bytes counted for this file.
    bytes: u64,
    /// Open descriptors and streams.
    opens: u32,
    /// Open write streams and running descriptor writes: writes that may land later.
    writers: u32,
    /// Whether a name still points at it.
    linked: bool,
}

impl TmpQuota {
    /// The books of the `/tmp` folder `dir`, starting from what it holds now.
    pub(crate) fn load(dir: &Path, max_bytes: u64, max_entries: u64) -> anyhow::Result<Self> {
        let mut usage = TmpUsage::default();
        let mut seen = std::collections::HashSet::new();
        walk(dir, &mut usage, &mut seen)
            .with_context(|| format!("failed to measure `{}`", dir.display()))?;
        Ok(Self {
            max_bytes,
            max_entries,
            book: Mutex::new(Book {
                usage,
                files: HashMap::new(),
            }),
            namespace: tokio::sync::Mutex::new(()),
            refused: prometheus_client::metrics::counter::Counter::default(),
        })
    }

    /// What the books hold now.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> TmpUsage {
        self.book().usage
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // The book is updated in single statements; a panic elsewhere cannot leave it half-done.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serialises operations that add or remove names; hold it across the lookup, the operation
    /// and its accounting.
    pub(crate) async fn lock_names(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.namespace.lock().await
    }

    /// Counts every write refused at the limits in `counter` from now on.
    pub(crate) fn count_refusals_in(
        &mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) {
        self.refused = counter;
    }

    /// Counts a new file, folder or link before it is made; [`Self::release_entry`] undoes it if
    /// the operation then fails.
    pub(crate) fn reserve_entry(&self) -> Result<(), QuotaExceeded> {
        let mut book = self.book();
        if book.usage.entries >= self.max_entries {
            self.refused.inc();
            return Err(QuotaExceeded::Entries {
                limit: self.max_entries,
            });
        }
        book.usage.entries += 1;
        Ok(())
    }

    /// Gives back an entry: a name was removed, or a reserved one was not made.
    pub(crate) fn release_entry(&self) {
        let mut book = self.book();
        book.usage.entries = book.usage.entries.saturating_sub(1);
    }

    /// Records that the last name of a file is gone (unlinked, or replaced by a rename). Its bytes
    /// are given back now, or when its last handle closes if it is still open. `size` is its size
    /// as read before the unlink, used only if the file was never opened since load.
    pub(crate) fn unlinked(&self, key: FileKey, size: u64) {
        let mut book = self.book();
        let freed = match book.files.get_mut(&key) {
            Some(counted) if counted.opens > 0 => {
                counted.linked = false;
                0
            }
            Some(_) => book.files.remove(&key).map_or(0, |c| c.bytes),
            None => size,
        };
        book.usage.bytes = book.usage.bytes.saturating_sub(freed);
    }

    /// Registers an open handle of a file in `/tmp`; the handle keeps the file's count alive.
    pub(crate) fn open(
        self: &Arc<Self>,
        key: FileKey,
        file: Arc<File>,
    ) -> std::io::Result<OpenFile> {
        let mut book = self.book();
        match book.files.get_mut(&key) {
            Some(counted) => counted.opens += 1,
            None => {
                // Not open anywhere, so no write is in flight: its size is what the books
                // already hold for it (from the walk at load, or reconciled at its last close).
                let bytes = file.metadata()?.len();
                book.files.insert(
                    key,
                    Counted {
                        bytes,
                        opens: 1,
                        writers: 0,
                        linked: true,
                    },
                );
            }
        }
        Ok(OpenFile {
            quota: Arc::clone(self),
            key,
            file,
            writer: false,
        })
    }

    /// Moves the count of `key` to the size `new` computes from the current one: growing is
    /// refused past the limit, shrinking (only if `shrink`) gives bytes back.
    fn resize(
        &self,
        key: FileKey,
        shrink: bool,
        new: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(), QuotaExceeded> {
        let result = self.resize_counted(key, shrink, new);
        if result.is_err() {
            self.refused.inc();
        }
        result
    }

    fn resize_counted(
        &self,
        key: FileKey,
        shrink: bool,
        new: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(), QuotaExceeded> {
        let full = QuotaExceeded::Bytes {
            limit: self.max_bytes,
        };
        let mut book = self.book();
        let Book { usage, files } = &mut *book;
        // An open handle always has its file in the books; if not, refuse rather than not count.
        let counted = files.get_mut(&key).ok_or(full)?;
        let new = new(counted.bytes).ok_or(full)?;
        let shrink = shrink && counted.writers == 0;
        if new < counted.bytes && !shrink || new == counted.bytes {
            return Ok(());
        }
        let total = usage.bytes.saturating_sub(counted.bytes) + new;
        if new > counted.bytes && total > self.max_bytes {
            return Err(full);
        }
        usage.bytes = total;
        counted.bytes = new;
        Ok(())
    }
}

/// An open handle of a file in `/tmp`: every write through it is counted before it runs.
#[derive(Debug)]
pub(crate) struct OpenFile {
    quota: Arc<TmpQuota>,
    key: FileKey,
    file: Arc<File>,
    /// Whether this handle is a write stream.
    writer: bool,
}

/// A descriptor write running: while it lives, a truncation of the file gives nothing back.
pub(crate) struct Writing<'a>(&'a OpenFile);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.add_writers(-1);
    }
}

impl OpenFile {
    /// Counts a write of `len` bytes at `offset`.
    pub(crate) fn write_at(&self, offset: u64, len: u64) -> Result<(), QuotaExceeded> {
        self.quota
            .resize(self.key, false, |_| offset.checked_add(len))
    }

    /// Counts a descriptor write of `len` bytes at `offset`, running until the guard drops.
    pub(crate) fn begin_write(&self, offset: u64, len: u64) -> Result<Writing<'_>, QuotaExceeded> {
        self.write_at(offset, len)?;
        self.add_writers(1);
        Ok(Writing(self))
    }

    fn add_writers(&self, delta: i32) {
        let mut book = self.quota.book();
        if let Some(counted) = book.files.get_mut(&self.key) {
            counted.writers = counted.writers.saturating_add_signed(delta);
        }
    }

    /// Counts a write of `len` bytes at the end of the file.
    pub(crate) fn append(&self, len: u64) -> Result<(), QuotaExceeded> {
        self.quota
            .resize(self.key, false, |size| size.checked_add(len))
    }

    /// Counts a resize to `size` bytes: growing is refused past the limit, shrinking gives back.
    pub(crate) fn set_size(&self, size: u64) -> Result<(), QuotaExceeded> {
        self.quota.resize(self.key, true, |_| Some(size))
    }

    /// A write stream on the same file, made from this descriptor.
    pub(crate) fn stream(&self) -> OpenFile {
        let mut book = self.quota.book();
        if let Some(counted) = book.files.get_mut(&self.key) {
            counted.opens += 1;
            counted.writers += 1;
        }
        OpenFile {
            quota: Arc::clone(&self.quota),
            key: self.key,
            file: Arc::clone(&self.file),
            writer: true,
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let mut book = self.quota.book();
        let Book { usage, files } = &mut *book;
        let Some(counted) = files.get_mut(&self.key) else {
            return;
        };
        counted.opens = counted.opens.saturating_sub(1);
        if self.writer {
            counted.writers = counted.writers.saturating_sub(1);
        }
        if counted.opens > 0 {
            return;
        }
        if !counted.linked {
            // The last handle of an unlinked file: its blocks are freed now.
            usage.bytes = usage.bytes.saturating_sub(counted.bytes);
            files.remove(&self.key);
        } else if let Ok(meta) = self.file.metadata() {
            // No handle left, so no write in flight: the real size is the truth.
            usage.bytes = usage.bytes.saturating_sub(counted.bytes) + meta.len();
            counted.bytes = meta.len();
        }
    }
}

/// Adds what `dir` holds to `usage`, each file's bytes once however many names it has.
fn walk(
    dir: &Path,
    usage: &mut TmpUsage,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        usage.entries += 1;
        if meta.is_dir() {
            walk(&entry.path(), usage, seen)?;
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            usage.bytes += meta.len();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(dir: &Path, bytes: u64, entries: u64) -> Arc<TmpQuota> {
        Arc::new(TmpQuota::load(dir, bytes, entries).unwrap())
    }

    fn open(quota: &Arc<TmpQuota>, dir: &Path, name: &str, key: FileKey) -> OpenFile {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(name))
            .unwrap();
        quota.open(key, Arc::new(file)).unwrap()
    }

    #[test]
    fn load_counts_bytes_once_per_file_and_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), [0u8; 100]).unwrap();
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("b", dir.path().join("c")).unwrap();
        let usage = quota(dir.path(), 1000, 10).usage();
        assert_eq!(
            usage,
            TmpUsage {
                bytes: 100,
                entries: 4
            }
        );
    }

    #[test]
    fn writes_are_counted_by_their_end_and_refused_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let quota = quota(dir.path(), 1000, 10);
        let file = open(&quota, dir.path(), "f", (1, 1));
        file.write_at(0, 600).unwrap();
        file.write_at(100, 100).unwrap(); // inside what is counted
        assert_eq!(quota.usage().bytes, 600);
        file.write_at(900, 100).unwrap(); // sparse: the hole counts
        assert_eq!(quota.usage().bytes, 1000);
        assert_eq!(file.append(1), Err(QuotaExceeded::Bytes { limit: 1000 }));
        assert_eq!(
            file.write_at(u64::MAX, 1),
            Err(QuotaExceeded::Bytes { limit: 1000 })
        );
        file.set_size(10).unwrap();
        assert_eq!(quota.usage().bytes, 10);
        assert_eq!(
            file.set_size(1001),
            Err(QuotaExceeded::Bytes { limit: 1000 })
        );
    }

    #[test]
    fn an_unlinked_file_counts_until_its_last_handle_closes() {
        let dir = tempfile::tempdir().unwrap();
        let quota = quota(dir.path(), 1000, 10);
        let file = open(&quota, dir.path(), "f", (1, 1));
        file.write_at(0, 500).unwrap();
        let stream = file.stream();
        drop(file);
        quota.unlinked((1, 1), 0);
        assert_eq!(quota.usage().bytes, 500, "a stream still holds it");
        drop(stream);
        assert_eq!(quota.usage().bytes, 0);
    }

    #[test]
    fn a_truncation_gives_back_only_when_no_write_may_be_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let quota = quota(dir.path(), 1000, 10);
        let file = open(&quota, dir.path(), "f", (1, 1));
        file.write_at(0, 600).unwrap();
        let stream = file.stream();
        file.set_size(0).unwrap();
        assert_eq!(quota.usage().bytes, 600, "a stream's write may still land");
        drop(stream);
        {
            let _writing = file.begin_write(0, 600).unwrap();
            file.set_size(0).unwrap();
            assert_eq!(quota.usage().bytes, 600, "a descriptor write is running");
        }
        file.set_size(0).unwrap();
        assert_eq!(quota.usage().bytes, 0);
    }

    #[test]
    fn the_last_close_reconciles_with_the_real_size() {
        let dir = tempfile::tempdir().unwrap();
        let quota = quota(dir.path(), 1000, 10);
        let file = open(&quota, dir.path(), "f", (1, 1));
        file.write_at(0, 700).unwrap(); // reserved, never written
        drop(file);
        assert_eq!(quota.usage().bytes, 0);
        quota.unlinked((1, 1), 0);
        assert_eq!(quota.usage().bytes, 0);
    }

    #[test]
    fn entries_are_refused_past_the_limit_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let quota = quota(dir.path(), 1000, 2);
        quota.reserve_entry().unwrap();
        quota.reserve_entry().unwrap();
        assert_eq!(
            quota.reserve_entry(),
            Err(QuotaExceeded::Entries { limit: 2 })
        );
        quota.release_entry();
        quota.reserve_entry().unwrap();
    }
}
