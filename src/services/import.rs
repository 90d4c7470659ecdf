//! `micros import`: a Space app's YAML `Spacefile` (`v: 0`) read and written as a
//! `Spacefile.toml` beside it, with build commands for each engine. Every field is accounted for:
//! translated, translated with a default Space used to supply (said), or listed as dropped or as
//! work to do by hand. Nothing is dropped silently.

mod node;
mod python;
mod space;
mod translate;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::spec::manifest::{MANIFEST_FILE, Manifest};

/// The file a Space app's manifest is in.
pub const SPACEFILE: &str = "Spacefile";

/// What `micros import` makes of a Space app.
#[derive(Debug)]
pub struct Imported {
    /// The `Spacefile.toml` to write.
    pub manifest: String,
    /// Files the build needs beside it (the runtime's WIT, Python adapters), relative to the
    /// app folder: written along with the manifest.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// What was assumed, changed, dropped, or is left to do by hand.
    pub notes: Vec<Note>,
}

/// One thing the import says about a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What kind of thing it says.
    pub kind: NoteKind,
    /// The field, as Space's `Spacefile` names it (`micros[0].run`, `icon`).
    pub field: String,
    /// What happened, and what to do if anything.
    pub text: String,
}

/// What a [`Note`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// Left for the user to do: the app will not build or serve as Space served it until done.
    ByHand,
    /// Not carried over, because micros has no counterpart or no need of it.
    Dropped,
    /// Translated with a default Space supplied, or a choice the import made.
    Assumed,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::ByHand => "to do by hand",
            NoteKind::Dropped => "dropped",
            NoteKind::Assumed => "assumed",
        };
        write!(f, "{kind}: `{}`: {}", self.field, self.text)
    }
}

/// Reads the Space app in `dir` (its `Spacefile`, and what the engines' defaults depend on: a
/// `Discovery.md`, a Python Micro's module, a front end's output folder) and translates it. The
/// result is a manifest `micros check` parses; it writes nothing.
pub fn import(dir: &Path) -> anyhow::Result<Imported> {
    let file = dir.join(SPACEFILE);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read `{}`\n  help: run `micros import` in a Space app's folder, the one with its `Spacefile`",
            file.display()
        )
    })?;
    import_text(dir, &text)
}

/// [`import`] of `text`, a `Spacefile` as if it were in `dir` (whose other files the engines'
/// defaults still look at).
pub fn import_text(dir: &Path, text: &str) -> anyhow::Result<Imported> {
    let file = dir.join(SPACEFILE);
    let spacefile = space::parse(&file, text)?;
    let discovery = std::fs::read_to_string(dir.join("Discovery.md")).ok();
    let imported = translate::translate(dir, &spacefile, discovery.as_deref())?;
    // The output is checked as `micros check` would check it. A value or a rule it breaks is
    // the Spacefile's (two Micros of one name, two primaries, a path that is no path): said of
    // the Spacefile's own field, which has the same index. Text that is not TOML at all would
    // be the import's own bug: said so rather than written.
    let target = dir.join(MANIFEST_FILE);
    match Manifest::parse(&target, &imported.manifest) {
        Ok(_) => Ok(imported),
        Err(crate::spec::manifest::ManifestError::Parse { field, message, .. })
            if field != "(document)" =>
        {
            let message = message.lines().last().unwrap_or_default();
            anyhow::bail!(
                "`{}`: `{field}`: {message}\n  help: fix it in the Spacefile and import again",
                file.display()
            )
        }
        Err(crate::spec::manifest::ManifestError::Invalid {
            field,
            message,
            help,
            ..
        }) => anyhow::bail!(
            "`{}`: `{field}`: {message}\n  help: {help}, in the Spacefile, and import again",
            file.display()
        ),
        Err(error) => anyhow::bail!(
            "the translated manifest does not parse, which is a bug of `micros import`; the \
             error is:\n{error}\nthe manifest was:\n{}",
            imported.manifest
        ),
    }
}

/// Writes what [`import`] made into `dir`: the manifest (refused if one exists, unless `force`)
/// and the files beside it.
pub fn write(dir: &Path, imported: &Imported, force: bool) -> anyhow::Result<()> {
    let target = dir.join(MANIFEST_FILE);
    if target.exists() && !force {
        anyhow::bail!(
            "`{}` exists already\n  help: run again with `--force` to replace it",
            target.display()
        );
    }
    for (path, bytes) in &imported.files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&path, bytes)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    std::fs::write(&target, &imported.manifest)
        .with_context(|| format!("cannot write `{}`", target.display()))
}
