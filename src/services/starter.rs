//! `micros new`: a new app folder from the starter of a language, ready for `micros up --build`.

use std::path::Path;

use anyhow::{Context as _, bail};
use include_dir::{Dir, include_dir};

/// The starters, one app folder per language (`templates/<language>/`), built into the binary.
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The runtime's WIT (`wit/`): written into Python and JavaScript apps, whose tools generate
/// their bindings from it.
static WIT: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/wit");

/// What a starter's `Spacefile.toml` and `README.md` say where the app's name goes.
const NAME_MARK: &str = "{{app_name}}";

/// A language a starter is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, built with cargo for `wasm32-wasip2`.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

impl Language {
    /// The starter's folder under `templates/`.
    fn folder(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
        }
    }

    /// Every language, in the order `micros new --help` lists them.
    pub const ALL: [Language; 3] = [Self::Rust, Self::Python, Self::Js];

    /// The name `--lang` takes.
    pub fn name(self) -> &'static str {
        self.folder()
    }

    /// Whether the app needs the runtime's WIT beside its manifest.
    fn needs_wit(self) -> bool {
        self != Self::Rust
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|language| language.name() == name)
            .ok_or_else(|| format!("no starter for `{name}`; there are `rust`, `python` and `js`"))
    }
}

/// Makes the app folder `dir` (which must not exist, or be empty) from the starter of
/// `language`; the app is named after the folder. Returns the app's name.
pub fn create(dir: &Path, language: Language) -> anyhow::Result<String> {
    let name = app_name(dir)?;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        bail!(
            "`{}` already exists and is not empty\n  help: pick a new folder name",
            dir.display()
        );
    }
    let template = TEMPLATES
        .get_dir(language.folder())
        .context("the starter is missing from this build")?;
    write_tree(template, Path::new(language.folder()), dir, &name)?;
    if language.needs_wit() {
        write_tree(&WIT, Path::new(""), &dir.join("wit"), &name)?;
    }
    Ok(name)
}

/// The app's name: the folder's last component, which must make a valid `app_name`.
fn app_name(dir: &Path) -> anyhow::Result<String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{}`: the app is named after its folder, and `{name}` is not a good name\n  help: use letters, digits, `-` and `_` (at most 64, starting with a letter or digit), e.g. `micros new my-app`",
            dir.display()
        );
    }
    Ok(name)
}

/// The runtime's WIT, as `micros new` writes it: each file's path under `wit/`, and its bytes.
pub(crate) fn wit_files() -> Vec<(std::path::PathBuf, &'static [u8])> {
    fn collect(dir: &'static Dir<'static>, into: &mut Vec<(std::path::PathBuf, &'static [u8])>) {
        for entry in dir.entries() {
            if let Some(dir) = entry.as_dir() {
                collect(dir, into);
            } else if let Some(file) = entry.as_file() {
                into.push((Path::new("wit").join(file.path()), file.contents()));
            }
        }
    }
    let mut files = Vec::new();
    collect(&WIT, &mut files);
    files
}

/// The Python starter's web toolkit, `micro.py` (the WSGI and ASGI adapters among it).
pub(crate) fn python_toolkit() -> anyhow::Result<&'static [u8]> {
    TEMPLATES
        .get_file("python/main/micro.py")
        .map(include_dir::File::contents)
        .context("the Python toolkit is missing from this build")
}

/// The Python starter's `deta.py`: Deta's Python SDK's API over the app's own Base and Drive.
pub(crate) fn python_deta() -> anyhow::Result<&'static [u8]> {
    TEMPLATES
        .get_file("python/main/deta.py")
        .map(include_dir::File::contents)
        .context("the Python `deta` module is missing from this build")
}

/// What a JavaScript Micro made by `micros import` is bundled with (`templates/space-js/`:
/// `prelude.js`, `node-fetch.js`), and the JavaScript starter's `world.wit`, each with its
/// path in the app folder.
pub(crate) fn space_js_files(
    support: &str,
) -> anyhow::Result<Vec<(std::path::PathBuf, &'static [u8])>> {
    let mut files = Vec::new();
    for name in ["prelude.js", "node-fetch.js"] {
        let file = TEMPLATES
            .get_file(format!("space-js/{name}"))
            .with_context(|| format!("`{name}` is missing from this build"))?;
        files.push((Path::new(support).join(name), file.contents()));
    }
    let world = TEMPLATES
        .get_file("js/world.wit")
        .context("the JavaScript world is missing from this build")?;
    files.push((std::path::PathBuf::from("world.wit"), world.contents()));
    Ok(files)
}

/// Writes every file of `tree` (whose paths start with `prefix`) under `to`, the app's name put
/// in where the starter marks it.
fn write_tree(tree: &Dir<'_>, prefix: &Path, to: &Path, name: &str) -> anyhow::Result<()> {
    for entry in tree.entries() {
        if let Some(dir) = entry.as_dir() {
            write_tree(dir, prefix, to, name)?;
            continue;
        }
        let Some(file) = entry.as_file() else {
            continue;
        };
        let relative = file
            .path()
            .strip_prefix(prefix)
            .context("a starter file outside its folder")?;
        let path = to.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let contents = match file.contents_utf8() {
            Some(text) if text.contains(NAME_MARK) => {
                text.replace(NAME_MARK, name).into_bytes().into()
            }
            _ => std::borrow::Cow::Borrowed(file.contents()),
        };
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_starter_has_a_manifest_that_loads_once_named() {
        for language in [Language::Rust, Language::Python, Language::Js] {
            let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let dir = parent.path().join("my-app");
            assert_eq!(create(&dir, language).ok().as_deref(), Some("my-app"));
            let manifest =
                crate::spec::manifest::Manifest::load(&dir).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(manifest.app_name.as_deref(), Some("my-app"));
            assert_eq!(dir.join("wit/micro.wit").is_file(), language.needs_wit());
        }
    }

    #[test]
    fn the_starters_hold_sources_only() {
        // Built into the binary as they are on disk: a starter built in place (a `target/`,
        // installed tools) would make every binary carry it.
        let mut size = 0;
        let mut stack = vec![&TEMPLATES];
        while let Some(dir) = stack.pop() {
            for entry in dir.entries() {
                let path = entry.path().to_string_lossy().into_owned();
                for built in ["target", ".tools", "node_modules", ".micros", "__pycache__"] {
                    assert!(!path.split('/').any(|part| part == built), "{path}");
                }
                assert!(!path.ends_with(".wasm"), "{path}");
                match (entry.as_dir(), entry.as_file()) {
                    (Some(dir), _) => stack.push(dir),
                    (_, Some(file)) => size += file.contents().len(),
                    _ => {}
                }
            }
        }
        assert!(size < 512 * 1024, "{size} bytes of starters");
    }

    #[test]
    fn a_bad_name_or_a_used_folder_is_refused_with_the_fix() {
        let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let error = create(&parent.path().join("my app"), Language::Rust)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.contains("`my app` is not a good name") && error.contains("micros new my-app"),
            "{error}"
        );
        let used = parent.path().join("used");
        std::fs::create_dir(&used).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(used.join("x"), "").unwrap_or_else(|e| panic!("{e}"));
        let error = create(&used, Language::Rust)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(error.contains("already exists and is not empty"), "{error}");
    }
}
