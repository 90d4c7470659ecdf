//! `micros push`'s side: an app folder packed into a bundle, the same app always to the same
//! bytes.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::ignore::{DEFAULT_IGNORES, Ignore};
use super::{IGNORE_FILE, MAX_ENTRIES, MAX_UNPACKED_BYTES};
use crate::spec::manifest::{MANIFEST_FILE, Manifest};

/// What one entry of the bundle is made from.
#[derive(Debug)]
enum Source {
    /// A folder.
    Folder,
    /// A file on the host, and its size when it was listed.
    File { path: PathBuf, len: u64 },
}

/// Packs an app for upload: `Spacefile.toml`, and each Micro's `src` (minus what `.spaceignore`
/// and the default ignores leave out), always including each Micro's component file. A gzip'd
/// tar. Returns the bytes.
pub(crate) fn pack(manifest: &Manifest) -> anyhow::Result<Vec<u8>> {
    let dir = &manifest.dir;
    let ignore = Ignore::load(dir)?;
    // Sorted by path, so that a folder comes before what it holds and the bytes never vary.
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    let len = file_len(&manifest.file)?;
    entries.insert(
        MANIFEST_FILE.to_string(),
        Source::File {
            path: manifest.file.clone(),
            len,
        },
    );
    for micro in &manifest.micros {
        let src = inside_app(&micro.src).with_context(|| {
            format!(
                "`src = \"{}\"` of the Micro `{}` is outside the app folder\n  help: a bundle holds only what is under `{}`",
                micro.src.display(),
                micro.name,
                dir.display()
            )
        })?;
        add_folders(dir, &src, &mut entries)?;
        walk(dir, &src, &ignore, &mut entries)?;
        if micro.is_static() {
            // Its files are what it serves, under `src`: packed by the walk.
            continue;
        }
        let component = inside_app(&micro.src.join(&micro.component)).with_context(|| {
            format!(
                "`component = \"{}\"` of the Micro `{}` is outside the app folder\n  help: a bundle holds only what is under `{}`",
                micro.component.display(),
                micro.name,
                dir.display()
            )
        })?;
        let (parent, _) = component.rsplit_once('/').unwrap_or(("", &component));
        add_folders(dir, parent, &mut entries)?;
        let path = dir.join(&component);
        let len = file_len(&path).with_context(|| {
            format!(
                "cannot bundle the component of the Micro `{}`\n  help: build it first (`micros build`)",
                micro.name
            )
        })?;
        entries.insert(component, Source::File { path, len });
    }
    check_size(&entries)?;
    write(&entries)
}

/// The path `relative` (to the app folder) with `.` and `..` resolved, `/`-separated; an error
/// if it leaves the app folder or is not UTF-8. The app folder itself is the empty path.
fn inside_app(relative: &Path) -> anyhow::Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in relative.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) => parts.push(
                name.to_str()
                    .with_context(|| format!("`{}` is not UTF-8", relative.display()))?,
            ),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    bail!("`{}` climbs out of it", relative.display());
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!("`{}` is absolute", relative.display())
            }
        }
    }
    Ok(parts.join("/"))
}

/// Adds the folder `path` (from the app folder `dir`) and the folders above it, each checked to
/// be a folder and not a symlink.
fn add_folders(
    dir: &Path,
    path: &str,
    entries: &mut BTreeMap<String, Source>,
) -> anyhow::Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    let mut prefix = String::new();
    for name in path.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(name);
        let host = dir.join(&prefix);
        let kind = std::fs::symlink_metadata(&host)
            .with_context(|| format!("cannot read `{}`", host.display()))?
            .file_type();
        if kind.is_symlink() {
            bail!(
                "`{}` is a symlink, which a bundle cannot hold\n  help: put the folder itself there",
                host.display()
            );
        }
        if !kind.is_dir() {
            bail!("`{}` is not a folder", host.display());
        }
        entries.insert(prefix.clone(), Source::Folder);
    }
    Ok(())
}

/// The size of the file at `path`, which must be a file and not a symlink.
fn file_len(path: &Path) -> anyhow::Result<u64> {
    let metadata = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if metadata.file_type().is_symlink() {
        bail!(
            "`{}` is a symlink, which a bundle cannot hold\n  help: put the file itself there",
            path.display()
        );
    }
    if !metadata.is_file() {
        bail!("`{}` is not a file", path.display());
    }
    Ok(metadata.len())
}

/// Adds what the folder `src` (from the app folder `dir`) holds, at every depth, but for what
/// the default ignores and `ignore` leave out. Symlinks are errors, never followed.
fn walk(
    dir: &Path,
    src: &str,
    ignore: &Ignore,
    entries: &mut BTreeMap<String, Source>,
) -> anyhow::Result<()> {
    let mut folders = vec![src.to_string()];
    while let Some(folder) = folders.pop() {
        let host = dir.join(&folder);
        let listing = std::fs::read_dir(&host)
            .with_context(|| format!("cannot read `{}`", host.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("cannot read `{}`", host.display()))?;
            let path = item.path();
            let Ok(name) = item.file_name().into_string() else {
                bail!(
                    "`{}`: the name is not UTF-8, which a bundle cannot hold\n  help: rename it, or leave it out in `{IGNORE_FILE}`",
                    path.display()
                );
            };
            if DEFAULT_IGNORES.contains(&name.as_str()) {
                continue;
            }
            let relative = if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            };
            let kind = item
                .file_type()
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            if ignore.ignores(&relative, kind.is_dir()) {
                continue;
            }
            if kind.is_symlink() {
                bail!(
                    "`{}` is a symlink, which a bundle cannot hold\n  help: put the file itself there, or leave it out in `{IGNORE_FILE}`",
                    path.display()
                );
            } else if kind.is_dir() {
                entries.insert(relative.clone(), Source::Folder);
                folders.push(relative);
            } else if kind.is_file() {
                let len = file_len(&path)?;
                entries.insert(relative, Source::File { path, len });
            } else {
                bail!(
                    "`{}` is neither a file nor a folder, which a bundle cannot hold\n  help: leave it out in `{IGNORE_FILE}`",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Refuses a bundle the server would refuse for its size, before packing it.
fn check_size(entries: &BTreeMap<String, Source>) -> anyhow::Result<()> {
    if entries.len() > MAX_ENTRIES {
        bail!(
            "the app has {} files and folders to bundle; at most {MAX_ENTRIES} are allowed\n  help: leave out what the Micros do not need in `{IGNORE_FILE}`",
            entries.len()
        );
    }
    let bytes: u64 = entries
        .values()
        .map(|source| match source {
            Source::Folder => 0,
            Source::File { len, .. } => *len,
        })
        .sum();
    if bytes > MAX_UNPACKED_BYTES {
        bail!(
            "the app's files to bundle total {bytes} bytes; at most {MAX_UNPACKED_BYTES} are allowed\n  help: leave out what the Micros do not need in `{IGNORE_FILE}`"
        );
    }
    Ok(())
}

/// The gzip'd tar of `entries`: folders 0755 and files 0644, owned by 0, from time 0.
fn write(entries: &BTreeMap<String, Source>) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, source) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match source {
            Source::Folder => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, name, io::empty())
                    .with_context(|| format!("cannot pack `{name}`"))?;
            }
            Source::File { path, .. } => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?;
                // The size of the file opened, which may have changed since it was listed.
                let len = file
                    .metadata()
                    .with_context(|| format!("cannot read `{}`", path.display()))?
                    .len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(len);
                let data = Exact {
                    inner: file.take(len),
                    left: len,
                };
                builder
                    .append_data(&mut header, name, data)
                    .with_context(|| format!("cannot pack `{}`", path.display()))?;
            }
        }
    }
    let encoder = builder.into_inner().context("cannot pack the app")?;
    encoder.finish().context("cannot pack the app")
}

/// Reads exactly `left` bytes from `inner`, or fails: a file that shrinks while it is packed
/// would make the tar lie about its size.
struct Exact<R> {
    /// The file, limited to the size in its header.
    inner: R,
    /// Bytes still to come.
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was packed; pack again",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_may_not_leave_the_app_folder() {
        assert_eq!(inside_app(Path::new("./web/../api/")).unwrap(), "api");
        assert_eq!(inside_app(Path::new(".")).unwrap(), "");
        assert!(inside_app(Path::new("web/../..")).is_err());
        assert!(inside_app(Path::new("/etc")).is_err());
    }
}
