//! `wasi:filesystem/types` with the `/tmp` quota in front of every path that writes.
//!
//! Why this shape: wasmtime-wasi 48 has no quota hook, and its filesystem is hundreds of lines of
//! careful sandboxing (cap-std path resolution, permissions) that must not be re-implemented.
//! So the stock implementation stays, and the functions of the interface that can add bytes or
//! entries are defined again over it in the linker: each checks and counts against the Micro's
//! [`TmpQuota`], then calls the stock function. A stream made for writing a file is wrapped so
//! each write through it is counted too. [`GUARDED`] and [`UNGUARDED`] name every function of the
//! interface, and a test fails if the WIT gains one that neither list names, so a new write path
//! cannot arrive unguarded with a wasmtime upgrade.
//!
//! Only descriptors under `/tmp` are counted: the root is preopened read-only and the stock
//! functions refuse every write through it.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::filesystem::WasiFilesystemView as _;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, FsError, FsResult, OutputStream, Pollable, StreamError};

use super::Host;
use super::quota::{FileKey, OpenFile, QuotaExceeded, TmpQuota};

/// The interface as wasmtime-wasi 48 links it (every `wasi:filesystem/types@0.2.x` import
/// resolves to it).
const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// Functions re-defined here: every one that can add bytes or entries to `/tmp` (or remove them,
/// which the books must see too), and the descriptor's destructor.
#[cfg(test)]
const GUARDED: &[&str] = &[
    "[method]descriptor.write",
    "[method]descriptor.write-via-stream",
    "[method]descriptor.append-via-stream",
    "[method]descriptor.set-size",
    "[method]descriptor.open-at",
    "[method]descriptor.create-directory-at",
    "[method]descriptor.symlink-at",
    "[method]descriptor.link-at",
    "[method]descriptor.rename-at",
    "[method]descriptor.unlink-file-at",
    "[method]descriptor.remove-directory-at",
];

/// Functions left to the stock implementation: they read, or change only times and hints.
#[cfg(test)]
const UNGUARDED: &[&str] = &[
    "[method]descriptor.read-via-stream",
    "[method]descriptor.advise",
    "[method]descriptor.sync-data",
    "[method]descriptor.get-flags",
    "[method]descriptor.get-type",
    "[method]descriptor.set-times",
    "[method]descriptor.read",
    "[method]descriptor.read-directory",
    "[method]descriptor.sync",
    "[method]descriptor.stat",
    "[method]descriptor.stat-at",
    "[method]descriptor.set-times-at",
    "[method]descriptor.readlink-at",
    "[method]descriptor.is-same-object",
    "[method]descriptor.metadata-hash",
    "[method]descriptor.metadata-hash-at",
    "[method]directory-entry-stream.read-directory-entry",
    "filesystem-error-code",
];

/// What one store knows of `/tmp`: the Micro's quota and the files it has open there.
pub(crate) struct TmpFiles {
    quota: Arc<TmpQuota>,
    /// Open files under `/tmp`, by descriptor handle. Dropped with the store, so a guest that
    /// never closes a file still gives its handles back when the execution ends.
    open: std::collections::HashMap<u32, OpenFile>,
}

impl TmpFiles {
    /// The `/tmp` state of a new store.
    pub(crate) fn new(quota: Arc<TmpQuota>) -> Self {
        Self {
            quota,
            open: Default::default(),
        }
    }
}

/// Links the guarded functions over the stock ones already in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let result = define(linker);
    linker.allow_shadowing(false);
    result
}

type Fd = Resource<Descriptor>;

fn define(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    let mut inst = linker.instance(INTERFACE)?;
    inst.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store, rep| {
            let host = store.data_mut();
            host.tmp.open.remove(&rep);
            HostDescriptor::drop(&mut host.filesystem(), Resource::new_own(rep))
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, buf, offset): (Fd, Vec<u8>, u64)| {
            Box::new(async move { lower(write(store.data_mut(), fd, buf, offset).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Fd, u64)| {
            Box::new(async move { lower(write_via_stream(store.data_mut(), fd, Some(offset))) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Fd,)| {
            Box::new(async move { lower(write_via_stream(store.data_mut(), fd, None)) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Fd, u64)| {
            Box::new(async move { lower(set_size(store.data_mut(), fd, size).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, oflags, flags): (
            Fd,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                lower(open_at(store.data_mut(), fd, path_flags, path, oflags, flags).await)
            })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (fd, path): (Fd, String)| {
            Box::new(async move { lower(create_directory_at(store.data_mut(), fd, path).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, path): (Fd, String, String)| {
            Box::new(async move { lower(symlink_at(store.data_mut(), fd, target, path).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store, (fd, flags, old, new_fd, new): (Fd, PathFlags, String, Fd, String)| {
            Box::new(
                async move { lower(link_at(store.data_mut(), fd, flags, old, new_fd, new).await) },
            )
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store, (fd, old, new_fd, new): (Fd, String, Fd, String)| {
            Box::new(async move { lower(rename_at(store.data_mut(), fd, old, new_fd, new).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.unlink-file-at",
        |mut store, (fd, path): (Fd, String)| {
            Box::new(async move { lower(unlink_file_at(store.data_mut(), fd, path).await) })
        },
    )?;
    inst.func_wrap_async(
        "[method]descriptor.remove-directory-at",
        |mut store, (fd, path): (Fd, String)| {
            Box::new(async move { lower(remove_directory_at(store.data_mut(), fd, path).await) })
        },
    )?;
    Ok(())
}

/// A stock result as the guest sees it: an error code, or a trap for a host failure.
fn lower<T>(result: FsResult<T>) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(error) => Ok((Err(error.downcast()?),)),
    }
}

/// The guest's view of a refused write: a full device. The log says which limit.
fn full(error: QuotaExceeded) -> FsError {
    tracing::warn!(error.type = "tmp_full", "{error}");
    ErrorCode::InsufficientSpace.into()
}

fn code(error: &FsError) -> Option<ErrorCode> {
    error.downcast_ref().copied()
}

/// A borrow of the same descriptor, to call a stock function again after one consumed `fd`.
fn again(fd: &Fd) -> Fd {
    Resource::new_borrow(fd.rep())
}

/// The quota if `fd` is a folder under `/tmp` (the only writable preopen).
fn tmp_dir(host: &mut Host, fd: &Fd) -> Option<Arc<TmpQuota>> {
    match host.table.get(fd) {
        Ok(Descriptor::Dir(dir)) if dir.perms == FsPerms::ReadWrite => {
            Some(Arc::clone(&host.tmp.quota))
        }
        _ => None,
    }
}

async fn write(host: &mut Host, fd: Fd, buf: Vec<u8>, offset: u64) -> FsResult<u64> {
    let Some(file) = host.tmp.open.remove(&fd.rep()) else {
        return HostDescriptor::write(&mut host.filesystem(), fd, buf, offset).await;
    };
    // Held out of the map while the write runs (the store is busy with this call meanwhile).
    let rep = fd.rep();
    let written = match file.begin_write(offset, buf.len() as u64) {
        Ok(_writing) => HostDescriptor::write(&mut host.filesystem(), fd, buf, offset).await,
        Err(error) => Err(full(error)),
    };
    host.tmp.open.insert(rep, file);
    written
}

fn write_via_stream(
    host: &mut Host,
    fd: Fd,
    position: Option<u64>,
) -> FsResult<Resource<DynOutputStream>> {
    let rep = fd.rep();
    let stream = match position {
        Some(offset) => HostDescriptor::write_via_stream(&mut host.filesystem(), fd, offset)?,
        None => HostDescriptor::append_via_stream(&mut host.filesystem(), fd)?,
    };
    let Some(file) = host.tmp.open.get(&rep) else {
        return Ok(stream);
    };
    let file = file.stream();
    let inner = host.table.delete(stream)?;
    let guarded: DynOutputStream = Box::new(QuotaStream {
        inner,
        file,
        position,
    });
    Ok(host.table.push(guarded)?)
}

async fn set_size(host: &mut Host, fd: Fd, size: u64) -> FsResult<()> {
    if let Some(file) = host.tmp.open.get(&fd.rep()) {
        file.set_size(size).map_err(full)?;
    }
    HostDescriptor::set_size(&mut host.filesystem(), fd, size).await
}

async fn open_at(
    host: &mut Host,
    fd: Fd,
    path_flags: PathFlags,
    path: String,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> FsResult<Fd> {
    let Some(quota) = tmp_dir(host, &fd) else {
        return HostDescriptor::open_at(
            &mut host.filesystem(),
            fd,
            path_flags,
            path,
            oflags,
            flags,
        )
        .await;
    };
    let _names = quota.lock_names().await;
    let creates = oflags.contains(OpenFlags::CREATE)
        && matches!(
            HostDescriptor::stat_at(&mut host.filesystem(), again(&fd), path_flags, path.clone())
                .await,
            Err(e) if code(&e) == Some(ErrorCode::NoEntry)
        );
    if creates {
        quota.reserve_entry().map_err(full)?;
    }
    let opened =
        HostDescriptor::open_at(&mut host.filesystem(), fd, path_flags, path, oflags, flags).await;
    let new = match opened {
        Ok(new) => new,
        Err(error) => {
            if creates {
                quota.release_entry();
            }
            return Err(error);
        }
    };
    let file = match host.table.get(&new)? {
        Descriptor::File(file) => Arc::clone(&file.file),
        Descriptor::Dir(_) => return Ok(new),
    };
    // A file in /tmp is counted from here until its last handle closes; if it cannot be, the
    // guest does not get it.
    let counted = match HostDescriptor::metadata_hash(&mut host.filesystem(), again(&new)).await {
        Ok(hash) => quota
            .open((hash.lower, hash.upper), file)
            .map_err(|e| FsError::from(ErrorCode::from(&e))),
        Err(error) => Err(error),
    };
    match counted {
        Ok(open) => {
            if oflags.contains(OpenFlags::TRUNCATE) {
                open.set_size(0).map_err(full)?;
            }
            host.tmp.open.insert(new.rep(), open);
            Ok(new)
        }
        Err(error) => {
            host.table.delete(new)?;
            Err(error)
        }
    }
}

/// Makes one new name (`make`, not yet started) under the quota: the entry is reserved first, and
/// given back if the name is not made.
async fn new_entry(quota: &TmpQuota, make: impl Future<Output = FsResult<()>>) -> FsResult<()> {
    let _names = quota.lock_names().await;
    quota.reserve_entry().map_err(full)?;
    let made = make.await;
    if made.is_err() {
        quota.release_entry();
    }
    made
}

async fn create_directory_at(host: &mut Host, fd: Fd, path: String) -> FsResult<()> {
    let quota = tmp_dir(host, &fd);
    let mut view = host.filesystem();
    let make = HostDescriptor::create_directory_at(&mut view, fd, path);
    match quota {
        Some(quota) => new_entry(&quota, make).await,
        None => make.await,
    }
}

/// A symlink may only point down from where it is: an absolute target, or one that climbs with
/// `..`, could lead out of `/tmp` for anything on the host that follows it.
fn target_stays_inside(target: &str) -> bool {
    !target.starts_with('/') && !target.split('/').any(|part| part == "..")
}

async fn symlink_at(host: &mut Host, fd: Fd, target: String, path: String) -> FsResult<()> {
    let Some(quota) = tmp_dir(host, &fd) else {
        return HostDescriptor::symlink_at(&mut host.filesystem(), fd, target, path).await;
    };
    if !target_stays_inside(&target) {
        tracing::warn!(
            error.type = "tmp_symlink",
            "refused a symlink to `{target}`: /tmp links must point inside /tmp, without `..`"
        );
        return Err(ErrorCode::NotPermitted.into());
    }
    new_entry(
        &quota,
        HostDescriptor::symlink_at(&mut host.filesystem(), fd, target, path),
    )
    .await
}

async fn link_at(
    host: &mut Host,
    fd: Fd,
    flags: PathFlags,
    old: String,
    new_fd: Fd,
    new: String,
) -> FsResult<()> {
    let quota = tmp_dir(host, &new_fd);
    let mut view = host.filesystem();
    let make = HostDescriptor::link_at(&mut view, fd, flags, old, new_fd, new);
    match quota {
        Some(quota) => new_entry(&quota, make).await,
        None => make.await,
    }
}

/// What a name points at, read before an operation removes or replaces it.
struct Existing {
    key: FileKey,
    /// A regular file whose only name this is: its bytes go when the name does.
    last_name_of_file: bool,
    size: u64,
}

async fn existing(host: &mut Host, fd: &Fd, path: &str) -> Option<Existing> {
    let no_follow = PathFlags::empty();
    let stat = HostDescriptor::stat_at(&mut host.filesystem(), again(fd), no_follow, path.into())
        .await
        .ok()?;
    let hash =
        HostDescriptor::metadata_hash_at(&mut host.filesystem(), again(fd), no_follow, path.into())
            .await
            .ok()?;
    Some(Existing {
        key: (hash.lower, hash.upper),
        last_name_of_file: stat.type_ == DescriptorType::RegularFile && stat.link_count == 1,
        size: stat.size,
    })
}

impl Existing {
    /// Books the removal of this name.
    fn removed(&self, quota: &TmpQuota) {
        quota.release_entry();
        if self.last_name_of_file {
            quota.unlinked(self.key, self.size);
        }
    }
}

async fn unlink_file_at(host: &mut Host, fd: Fd, path: String) -> FsResult<()> {
    let Some(quota) = tmp_dir(host, &fd) else {
        return HostDescriptor::unlink_file_at(&mut host.filesystem(), fd, path).await;
    };
    let _names = quota.lock_names().await;
    let before = existing(host, &fd, &path).await;
    HostDescriptor::unlink_file_at(&mut host.filesystem(), fd, path).await?;
    match before {
        Some(before) => before.removed(&quota),
        None => quota.release_entry(),
    }
    Ok(())
}

async fn remove_directory_at(host: &mut Host, fd: Fd, path: String) -> FsResult<()> {
    let Some(quota) = tmp_dir(host, &fd) else {
        return HostDescriptor::remove_directory_at(&mut host.filesystem(), fd, path).await;
    };
    let _names = quota.lock_names().await;
    HostDescriptor::remove_directory_at(&mut host.filesystem(), fd, path).await?;
    quota.release_entry();
    Ok(())
}

async fn rename_at(host: &mut Host, fd: Fd, old: String, new_fd: Fd, new: String) -> FsResult<()> {
    let Some(quota) = tmp_dir(host, &new_fd) else {
        return HostDescriptor::rename_at(&mut host.filesystem(), fd, old, new_fd, new).await;
    };
    let _names = quota.lock_names().await;
    let replaced = existing(host, &new_fd, &new).await;
    let moved = existing(host, &fd, &old).await;
    HostDescriptor::rename_at(&mut host.filesystem(), fd, old, new_fd, new).await?;
    // Renaming a name onto another name of the same file changes nothing.
    if let Some(replaced) = replaced
        && moved.is_none_or(|moved| moved.key != replaced.key)
    {
        replaced.removed(&quota);
    }
    Ok(())
}

/// A stream writing a file under `/tmp`: each write is counted before it is passed on. Only
/// `write` counts: `write-zeroes`, the blocking writes and splices reach it through the trait's
/// default methods, so none of those is overridden here (a test writes by each path).
struct QuotaStream {
    inner: DynOutputStream,
    file: OpenFile,
    /// Where the next write lands; `None` for a stream that appends.
    position: Option<u64>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let len = bytes.len() as u64;
        let counted = match self.position {
            Some(at) => self.file.write_at(at, len),
            None => self.file.append(len),
        };
        if let Err(error) = counted {
            tracing::warn!(error.type = "tmp_full", "{error}");
            // The stock `filesystem-error-code` reads the OS error: the guest sees a full device.
            let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(StreamError::LastOperationFailed(wasmtime::Error::new(
                enospc,
            )));
        }
        self.inner.write(bytes)?;
        if let Some(at) = &mut self.position {
            *at += len;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_the_interface_is_guarded_or_known_not_to_write() {
        let mut resolve = wit_parser::Resolve::default();
        let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        resolve.push_dir(&wit).unwrap();
        let (package, _) = resolve
            .packages
            .iter()
            .find(|(_, p)| format!("{}", p.name) == INTERFACE.replace("/types", ""))
            .expect("the WIT holds the interface wasmtime-wasi links");
        let interface = resolve.packages[package].interfaces["types"];
        let mut in_wit: Vec<&str> = resolve.interfaces[interface]
            .functions
            .keys()
            .map(String::as_str)
            .collect();
        let mut known: Vec<&str> = GUARDED.iter().chain(UNGUARDED).copied().collect();
        in_wit.sort_unstable();
        known.sort_unstable();
        assert_eq!(in_wit, known);
    }

    #[test]
    fn symlinks_may_only_point_down() {
        assert!(target_stays_inside("a"));
        assert!(target_stays_inside("sub/a"));
        assert!(target_stays_inside("./a"));
        assert!(!target_stays_inside("/etc/passwd"));
        assert!(!target_stays_inside("../a"));
        assert!(!target_stays_inside("sub/../../a"));
    }
}
