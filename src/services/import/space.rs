//! Space's `Spacefile` as people wrote it: every documented field, and whatever else a file
//! holds, kept so that the import can say what it did with it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The largest `Spacefile` read: far past any real one.
const MAX_SPACEFILE_BYTES: usize = 1024 * 1024;

/// A Space `Spacefile` (`v: 0`).
#[derive(Debug, Deserialize)]
pub(super) struct SpaceFile {
    /// `v: 0`.
    pub v: Option<Value>,
    /// The app's name.
    pub app_name: Option<String>,
    /// An image shown for the app.
    pub icon: Option<Value>,
    /// The Micros.
    #[serde(default)]
    pub micros: Vec<SpaceMicro>,
    /// Fields Space's documentation does not list.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One Micro of a `Spacefile`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SpaceMicro {
    pub name: Option<String>,
    pub src: Option<String>,
    pub engine: Option<String>,
    pub primary: Option<bool>,
    pub path: Option<String>,
    pub public: Option<bool>,
    pub public_routes: Option<Vec<String>>,
    pub presets: Option<SpacePresets>,
    pub actions: Option<Vec<SpaceAction>>,
    pub commands: Option<Vec<String>>,
    pub include: Option<Vec<String>>,
    pub run: Option<String>,
    pub dev: Option<String>,
    pub serve: Option<String>,
    pub provide_actions: Option<bool>,
    pub runtime: Option<String>,
    /// Fields Space's documentation does not list.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `presets:` of a Micro.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SpacePresets {
    pub env: Option<Vec<SpaceEnv>>,
    pub api_keys: Option<bool>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One `presets.env` entry.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SpaceEnv {
    pub name: Option<String>,
    pub description: Option<String>,
    /// A default as written: YAML may make `8080` a number, `yes` a string.
    pub default: Option<Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One scheduled action.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SpaceAction {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub trigger: Option<String>,
    pub default_interval: Option<String>,
    pub path: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Parses a `Spacefile`; the error names the file and where in it.
pub(super) fn parse(file: &Path, text: &str) -> anyhow::Result<SpaceFile> {
    if text.len() > MAX_SPACEFILE_BYTES {
        anyhow::bail!(
            "`{}` is {} bytes; a Spacefile is at most {MAX_SPACEFILE_BYTES}",
            file.display(),
            text.len()
        );
    }
    let spacefile: SpaceFile = serde_saphyr::from_str(text).map_err(|error| {
        anyhow::anyhow!(
            "`{}` is not a Spacefile micros can read: {error}\n  help: it is YAML, as Space \
             read it; see Deta's Spacefile reference for its fields",
            file.display()
        )
    })?;
    match &spacefile.v {
        Some(Value::Number(v)) if v.as_u64() == Some(0) => {}
        Some(other) => anyhow::bail!(
            "`{}`: `v: {other}` is not a Spacefile version micros knows (only `v: 0`, Space's)",
            file.display()
        ),
        None => anyhow::bail!(
            "`{}` has no `v: 0` line: it is not a Space Spacefile",
            file.display()
        ),
    }
    if spacefile.micros.is_empty() {
        anyhow::bail!("`{}` lists no `micros`", file.display());
    }
    Ok(spacefile)
}

/// The front matter of a `Discovery.md` (between its first two `---` lines), if it has one.
pub(super) fn discovery_front_matter(text: &str) -> BTreeMap<String, Value> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        return BTreeMap::new();
    }
    let front: Vec<&str> = lines.take_while(|line| line.trim() != "---").collect();
    serde_saphyr::from_str(&front.join("\n")).unwrap_or_default()
}

/// A YAML value as a short text for a note.
pub(super) fn brief(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}
