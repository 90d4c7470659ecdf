//! `micros data export` and `import`: all of an app's Base items and Drive files to and from a
//! folder, so that users can back up their data and move it between machines.
//!
//! The folder holds `base/{base}.jsonl` (one item per line, as stored) and, per drive,
//! `drive/{drive}/index.jsonl` (one `{"name", "content_type", "file"}` per file) beside the files
//! themselves, each named by the SHA-256 of its name (a Drive name may hold anything, `..` and
//! 1,024 bytes included, which no file system takes as a path). An import also reads Deta
//! Space's own export, unzipped ([`deta`]).

mod deta;

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::DATA_FILE;
use super::drive::MAX_FILE_BYTES;
use super::store::SqliteStore;

/// What an export or an import moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moved {
    /// Base items.
    pub items: u64,
    /// Drive files.
    pub files: u64,
}

fn file_name(name: &str) -> String {
    sha2::Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes every item and file of the app whose state folder is `state` to the new folder `to`
/// (which must not exist), as one consistent snapshot: a running app may go on writing.
pub fn export(state: &crate::settings::state::StateDir, to: &Path) -> anyhow::Result<Moved> {
    if to.exists() {
        bail!(
            "`{}` already exists: export into a new folder, so that nothing is overwritten",
            to.display()
        );
    }
    let store = SqliteStore::open(&state.path().join(DATA_FILE))?;
    let mut connection = store.lock();
    // One read transaction: the export is a snapshot, whatever is written meanwhile.
    let tx = connection.transaction()?;
    // Written beside the target and renamed at the end: a failed export leaves no half folder.
    let partial = to.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("failed to remove `{}`", partial.display()))?;
    }
    let mut moved = Moved::default();
    std::fs::create_dir_all(partial.join("base"))
        .with_context(|| format!("failed to create `{}`", partial.display()))?;
    {
        let mut statement = tx.prepare("SELECT base, item FROM items ORDER BY base, key")?;
        let mut rows = statement.query([])?;
        let mut open: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
        while let Some(row) = rows.next()? {
            let base: String = row.get(0)?;
            let item: String = row.get(1)?;
            if open.as_ref().is_none_or(|(name, _)| *name != base) {
                if let Some((_, mut writer)) = open.take() {
                    writer.flush()?;
                }
                let path = partial.join("base").join(format!("{base}.jsonl"));
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("failed to create `{}`", path.display()))?;
                open = Some((base, std::io::BufWriter::new(file)));
            }
            if let Some((_, writer)) = open.as_mut() {
                writeln!(writer, "{item}")?;
            }
            moved.items += 1;
        }
        if let Some((_, mut writer)) = open.take() {
            writer.flush()?;
        }
    }
    {
        let mut statement =
            tx.prepare("SELECT drive, name, content_type, data FROM files ORDER BY drive, name")?;
        let mut rows = statement.query([])?;
        let mut indexes: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let drive: String = row.get(0)?;
            let name: String = row.get(1)?;
            let content_type: String = row.get(2)?;
            let folder = partial.join("drive").join(&drive);
            if !indexes.contains_key(&drive) {
                std::fs::create_dir_all(&folder)
                    .with_context(|| format!("failed to create `{}`", folder.display()))?;
                let index = std::fs::File::create(folder.join("index.jsonl"))?;
                indexes.insert(drive.clone(), std::io::BufWriter::new(index));
            }
            let file = file_name(&name);
            std::fs::write(folder.join(&file), row.get_ref(3)?.as_blob()?)
                .with_context(|| format!("failed to write `{name}` of drive `{drive}`"))?;
            if let Some(index) = indexes.get_mut(&drive) {
                writeln!(
                    index,
                    "{}",
                    json!({ "name": name, "content_type": content_type, "file": file })
                )?;
            }
            moved.files += 1;
        }
        for (_, mut index) in indexes {
            index.flush()?;
        }
    }
    tx.finish()?;
    std::fs::rename(&partial, to)
        .with_context(|| format!("failed to move the export to `{}`", to.display()))?;
    Ok(moved)
}

/// Which export a folder held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// micros' own, written by [`export`].
    Micros,
    /// Deta Space's, unzipped: `bases/{base}.json` and `drives/{drive}/...`.
    Deta,
}

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The export's format.
    pub format: Format,
    /// The folder read: the one given, or the one folder inside it that holds Deta's export.
    pub folder: PathBuf,
    /// Items and files written, in all.
    pub moved: Moved,
    /// Items written per base, by name (Deta's export only).
    pub bases: Vec<(String, u64)>,
    /// Files written per drive, by name (Deta's export only).
    pub drives: Vec<(String, u64)>,
    /// Files left out: the `.DS_Store` and `._*` files a Mac adds to folders (Deta's export only).
    pub skipped: Vec<PathBuf>,
}

/// Reads an export into the app whose state folder is `state`, all of it in one transaction:
/// items and files of the same key or name are replaced, nothing else is touched, and an export
/// with a bad item or a missing file changes nothing. `from` is a folder written by [`export`],
/// or Deta Space's export unzipped ([`Format`]). An import that would take the app's data past
/// `limit` bytes ([`crate::Limits::data_bytes`]) is refused whole, as a write past it would be.
pub fn import(
    state: &crate::settings::state::StateDir,
    from: &Path,
    limit: u64,
) -> anyhow::Result<Imported> {
    if from.is_file() {
        if from
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
        {
            bail!(
                "`{}` is a zip file: unzip it first (`unzip {} -d FOLDER`) and import the folder",
                from.display(),
                from.display()
            );
        }
        bail!(
            "`{}` is a file: import the folder of an export",
            from.display()
        );
    }
    if from.join("base").is_dir() || from.join("drive").is_dir() {
        return Ok(Imported {
            format: Format::Micros,
            folder: from.to_path_buf(),
            moved: import_micros(state, from, limit)?,
            bases: Vec::new(),
            drives: Vec::new(),
            skipped: Vec::new(),
        });
    }
    if let Some(root) = deta::root(from)? {
        return deta::import(state, &root, limit);
    }
    bail!(
        "`{}` is not an export: it has neither `base/` nor `drive/` (micros' export) nor \
         `bases/` nor `drives/` (Deta Space's export, unzipped)",
        from.display()
    );
}

/// Reads a folder written by [`export`], which has `base/` or `drive/`, as [`import`] says.
fn import_micros(
    state: &crate::settings::state::StateDir,
    from: &Path,
    limit: u64,
) -> anyhow::Result<Moved> {
    let store = SqliteStore::open(&state.path().join(DATA_FILE))?;
    let mut connection = store.lock();
    let tx = connection.transaction()?;
    let mut moved = Moved::default();
    for (base, path) in entries(&from.join("base"), "jsonl")? {
        if !super::is_name(&base) {
            bail!("`{}`: `{base}` is not a base name", path.display());
        }
        let file = std::fs::File::open(&path)
            .with_context(|| format!("failed to open `{}`", path.display()))?;
        for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
            let at = || format!("`{}` line {}", path.display(), number + 1);
            let line = line.with_context(at)?;
            if line.trim().is_empty() {
                continue;
            }
            let item: serde_json::Map<String, Value> = serde_json::from_str(&line)
                .with_context(|| format!("{}: not a JSON object", at()))?;
            if !item.get("key").is_some_and(Value::is_string) {
                bail!("{}: the item has no string `key`", at());
            }
            // As a put checks it (key, `__expires`, size): an export may be edited by hand.
            let item = super::base::prepare(Value::Object(item))
                .map_err(|e| anyhow::anyhow!("{}: {e}; fix or remove the item", at()))?;
            super::store::write(&tx, &base, &item)?;
            moved.items += 1;
        }
    }
    let drives = from.join("drive");
    let folders = if drives.is_dir() {
        let mut folders: Vec<_> = std::fs::read_dir(&drives)?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .collect();
        folders.sort_by_key(std::fs::DirEntry::file_name);
        folders
    } else {
        Vec::new()
    };
    for folder in folders {
        let drive = folder.file_name().to_string_lossy().into_owned();
        if !super::is_name(&drive) {
            bail!(
                "`{}`: `{drive}` is not a drive name",
                folder.path().display()
            );
        }
        let index = folder.path().join("index.jsonl");
        let lines = std::fs::File::open(&index)
            .with_context(|| format!("failed to open `{}`", index.display()))?;
        for (number, line) in std::io::BufReader::new(lines).lines().enumerate() {
            let at = || format!("`{}` line {}", index.display(), number + 1);
            let line = line.with_context(at)?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Value = serde_json::from_str(&line).with_context(at)?;
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .with_context(|| format!("{}: no `{name}`", at()))
            };
            let (name, content_type, file) =
                (field("name")?, field("content_type")?, field("file")?);
            if file != file_name(&name) {
                bail!("{}: `file` is not the SHA-256 of `name`", at());
            }
            super::drive::check_name(&name)
                .map_err(|refusal| anyhow::anyhow!("{}: {refusal}", at()))?;
            let path = folder.path().join(&file);
            let size = std::fs::metadata(&path)
                .with_context(|| format!("{}: the file `{file}` is missing", at()))?
                .len();
            if size > MAX_FILE_BYTES {
                bail!(
                    "{}: the file `{file}` is {size} bytes, past the limit of {MAX_FILE_BYTES} \
                     for a Drive file",
                    at()
                );
            }
            let data = std::fs::read(&path)
                .with_context(|| format!("{}: the file `{file}` is missing", at()))?;
            if data.len() as u64 > MAX_FILE_BYTES {
                bail!(
                    "{}: the file `{file}` grew past the limit of {MAX_FILE_BYTES} bytes while \
                     it was imported; import again",
                    at()
                );
            }
            super::files::write_file(&tx, &drive, &name, &content_type, &data)?;
            moved.files += 1;
        }
    }
    check_room(&tx, from, limit)?;
    tx.commit()?;
    Ok(moved)
}

/// Refuses an import whose writes, not yet committed on `connection`, take the app's data past
/// `limit`: the caller's transaction is then dropped, so nothing of it is kept.
fn check_room(connection: &rusqlite::Connection, from: &Path, limit: u64) -> anyhow::Result<()> {
    let used = super::store::used_bytes(connection)?;
    if used > limit {
        bail!(
            "importing `{}` would take the app's data to {used} bytes, past its limit of {limit} \
             bytes: nothing was imported; raise the limit (`--data-limit`, on this command and \
             on `micros up`) or import less",
            from.display()
        );
    }
    Ok(())
}

/// The files of `folder` ending in `.{extension}`, by stem, in order.
fn entries(folder: &Path, extension: &str) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(folder)
        .with_context(|| format!("failed to read `{}`", folder.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .filter_map(|path| {
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            Some((stem, path))
        })
        .collect();
    found.sort();
    Ok(found)
}
