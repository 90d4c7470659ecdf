//! Deta Space's own export, unzipped: `bases/{base}.json` and `drives/{drive}/...`, read and
//! checked whole before anything is written, then written in one transaction.
//!
//! Deta never documented the shape of a base's file; what apps that read them found is a JSON
//! array of items, each with its `key`. JSON lines (one item per line) are read too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::super::base;
use super::super::drive::{self, MAX_FILE_BYTES};
use super::super::store::{self, Item, SqliteStore};
use super::super::{DATA_FILE, MAX_BASE_NAME, files, is_name};
use super::{Format, Imported, Moved};

/// A base of the export, checked.
#[derive(Debug)]
struct Base {
    name: String,
    items: Vec<Item>,
}

/// A file of a drive, checked; its bytes are read when it is written.
#[derive(Debug)]
struct DriveFile {
    /// Its name in the drive: its path under the drive's folder, with `/` between folders.
    name: String,
    content_type: String,
    path: PathBuf,
}

/// A drive of the export, checked.
#[derive(Debug)]
struct Drive {
    name: String,
    files: Vec<DriveFile>,
}

/// Deta's export, read and checked: what an import writes.
#[derive(Debug)]
struct Export {
    /// Where it was read from.
    root: PathBuf,
    bases: Vec<Base>,
    drives: Vec<Drive>,
    skipped: Vec<PathBuf>,
}

/// Whether `name` is a file a Mac adds to folders it shows or unpacks (`.DS_Store`, `._*`):
/// metadata, never an app's data.
fn is_mac_metadata(name: &str) -> bool {
    name == ".DS_Store" || name.starts_with("._")
}

/// Whether `folder` has Deta's `bases/` or `drives/`.
fn holds_export(folder: &Path) -> bool {
    folder.join("bases").is_dir() || folder.join("drives").is_dir()
}

/// The folder holding Deta's export in `from`: `from` itself, or the one folder inside it (a
/// zip unpacked into a folder of its own), hidden ones aside; `None` if neither holds `bases/`
/// or `drives/`.
pub(super) fn root(from: &Path) -> anyhow::Result<Option<PathBuf>> {
    if holds_export(from) {
        return Ok(Some(from.to_path_buf()));
    }
    if !from.is_dir() {
        return Ok(None);
    }
    let folders: Vec<PathBuf> = list(from)?
        .into_iter()
        .filter(|path| path.is_dir())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| !name.to_string_lossy().starts_with('.'))
        })
        .collect();
    Ok(match folders.as_slice() {
        [only] if holds_export(only) => Some(only.clone()),
        _ => None,
    })
}

/// Reads Deta's export at `root` (as found by [`root`]) into the app whose state folder is
/// `state`, as [`super::import`] says.
pub(super) fn import(
    state: &crate::settings::state::StateDir,
    root: &Path,
    limit: u64,
) -> anyhow::Result<Imported> {
    write(state, read(root)?, limit)
}

/// The paths in `folder`, in order of name.
fn list(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(folder)
        .with_context(|| format!("failed to read `{}`", folder.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("failed to read `{}`", folder.display()))?;
    paths.sort();
    Ok(paths)
}

/// The last part of `path`, which must be UTF-8: it names a base, a drive or a file.
fn name_of(path: &Path) -> anyhow::Result<&str> {
    path.file_name()
        .and_then(|name| name.to_str())
        .with_context(|| {
            format!(
                "`{}`: the name is not UTF-8: rename it (Base and Drive names are text)",
                path.display()
            )
        })
}

/// Reads and checks all of the export at `root`.
fn read(root: &Path) -> anyhow::Result<Export> {
    let mut export = Export {
        root: root.to_path_buf(),
        bases: Vec::new(),
        drives: Vec::new(),
        skipped: Vec::new(),
    };
    let bases = root.join("bases");
    if bases.is_dir() {
        for path in list(&bases)? {
            let file = name_of(&path)?;
            if is_mac_metadata(file) {
                export.skipped.push(path);
                continue;
            }
            let Some(name) = file.strip_suffix(".json").filter(|_| path.is_file()) else {
                bail!(
                    "`{}` is not a base: Deta's export holds one `{{base}}.json` file per base; \
                     move it out of `bases/`",
                    path.display()
                );
            };
            if !is_name(name) {
                bail!(
                    "`{}`: `{name}` is not a base name: up to {MAX_BASE_NAME} letters, digits, \
                     `_` and `-`; rename the file",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            let items = parse(&text)
                .and_then(check)
                .map_err(|message| anyhow::anyhow!("`{}` {message}", path.display()))?;
            export.bases.push(Base {
                name: name.to_string(),
                items,
            });
        }
    }
    let drives = root.join("drives");
    if drives.is_dir() {
        for path in list(&drives)? {
            let name = name_of(&path)?;
            if !path.is_dir() {
                if is_mac_metadata(name) {
                    export.skipped.push(path);
                    continue;
                }
                bail!(
                    "`{}` is not a drive: Deta's export holds one folder per drive; move it out \
                     of `drives/`",
                    path.display()
                );
            }
            if !is_name(name) {
                bail!(
                    "`{}`: `{name}` is not a drive name: up to {MAX_BASE_NAME} letters, digits, \
                     `_` and `-`; rename the folder",
                    path.display()
                );
            }
            let drive = Drive {
                name: name.to_string(),
                files: read_drive(&path, &mut export.skipped)?,
            };
            export.drives.push(drive);
        }
    }
    export.skipped.sort();
    Ok(export)
}

/// The items of a base's file: a JSON array of them, or JSON lines. An error says where, after
/// the file's name (`item 3: ...`, counted from 0).
fn parse(text: &str) -> Result<Vec<Value>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| format!("is not a JSON array of items: {e}; fix the file"));
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
        .map(|(index, value)| {
            value.map_err(|e| format!("item {index}: not JSON: {e}; fix the file"))
        })
        .collect()
}

/// Checks a base's items as a put does (key, `__expires`, size), and that no key is there
/// twice; Deta's items always had their key, so one without is an error, not given one.
fn check(values: Vec<Value>) -> Result<Vec<Item>, String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut items = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        let Some(object) = value.as_object() else {
            return Err(format!(
                "item {index}: not a JSON object: an item is `{{\"key\": \"...\", ...}}`"
            ));
        };
        if !object.get("key").is_some_and(Value::is_string) {
            return Err(format!(
                "item {index}: the item has no string `key`: give it one, or remove the item"
            ));
        }
        let item = base::prepare(value)
            .map_err(|e| format!("item {index}: {e}; fix or remove the item"))?;
        let key = item
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(first) = seen.get(&key) {
            return Err(format!(
                "item {index}: key `{key}` is item {first}'s too: keys are unique in a base; \
                 remove one of the two"
            ));
        }
        seen.insert(key, index);
        items.push(item);
    }
    Ok(items)
}

/// The files under a drive's `folder`, each named by its path under it, in order of name; the
/// Mac's metadata files go to `skipped`.
fn read_drive(folder: &Path, skipped: &mut Vec<PathBuf>) -> anyhow::Result<Vec<DriveFile>> {
    let mut found = Vec::new();
    // Folders still to read, and the names of their files so far (`photos/2023/`).
    let mut pending = vec![(folder.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for path in list(&dir)? {
            let own = name_of(&path)?;
            let name = format!("{prefix}{own}");
            let link = std::fs::symlink_metadata(&path)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            let metadata = std::fs::metadata(&path)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            if metadata.is_dir() {
                if link.is_symlink() {
                    // Followed, a link could lead back up: a loop, or data from elsewhere.
                    bail!(
                        "`{}` is a link to a folder: copy the folder in its place",
                        path.display()
                    );
                }
                pending.push((path, format!("{name}/")));
                continue;
            }
            if is_mac_metadata(own) {
                skipped.push(path);
                continue;
            }
            if !metadata.is_file() {
                bail!("`{}` is not a file: remove it", path.display());
            }
            drive::check_name(&name)
                .map_err(|refusal| anyhow::anyhow!("`{}`: {refusal}; rename it", path.display()))?;
            if metadata.len() > MAX_FILE_BYTES {
                bail!(
                    "`{}` is {} bytes, past the limit of {MAX_FILE_BYTES} for a Drive file",
                    path.display(),
                    metadata.len()
                );
            }
            let content_type = mime_guess::from_path(&name)
                .first_or_octet_stream()
                .essence_str()
                .to_string();
            found.push(DriveFile {
                name,
                content_type,
                path,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Writes a checked export into the app whose state folder is `state`, in one transaction:
/// a failure (a file gone since it was checked, a full disk) writes nothing.
fn write(
    state: &crate::settings::state::StateDir,
    export: Export,
    limit: u64,
) -> anyhow::Result<Imported> {
    let store = SqliteStore::open(&state.path().join(DATA_FILE))?;
    let mut connection = store.lock();
    let tx = connection.transaction()?;
    let mut imported = Imported {
        format: Format::Deta,
        folder: export.root,
        moved: Moved::default(),
        bases: Vec::new(),
        drives: Vec::new(),
        skipped: export.skipped,
    };
    for base in export.bases {
        for item in &base.items {
            store::write(&tx, &base.name, item)
                .with_context(|| format!("failed to write an item of base `{}`", base.name))?;
        }
        let count = base.items.len() as u64;
        imported.moved.items += count;
        imported.bases.push((base.name, count));
    }
    for drive in export.drives {
        for file in &drive.files {
            let data = std::fs::read(&file.path)
                .with_context(|| format!("failed to read `{}`", file.path.display()))?;
            if data.len() as u64 > MAX_FILE_BYTES {
                bail!(
                    "`{}` grew past the limit of {MAX_FILE_BYTES} bytes while it was imported; \
                     import again",
                    file.path.display()
                );
            }
            files::write_file(&tx, &drive.name, &file.name, &file.content_type, &data)
                .with_context(|| {
                    format!("failed to write `{}` of drive `{}`", file.name, drive.name)
                })?;
        }
        let count = drive.files.len() as u64;
        imported.moved.files += count;
        imported.drives.push((drive.name, count));
    }
    super::check_room(&tx, &imported.folder, limit)?;
    tx.commit()?;
    Ok(imported)
}

#[cfg(test)]
mod tests;
