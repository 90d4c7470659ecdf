//! `Spacefile.toml`: the app's manifest, parsed into validated types and checked once at load.

mod fields;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) use fields::is_host_name;
pub use fields::{
    ActionId, Engine, EnvName, Interval, MicroName, MicroPath, OutboundHost, RoutePattern,
};

/// The manifest's file name inside an app folder.
pub const MANIFEST_FILE: &str = "Spacefile.toml";
/// The most Micros one app may have, as on Space.
pub const MAX_MICROS: usize = 5;
/// The most scheduled actions one Micro may declare, as on Space.
pub const MAX_ACTIONS_PER_MICRO: usize = 5;
/// The most scheduled actions one app may declare.
pub const MAX_ACTIONS_PER_APP: usize = 25;
/// The largest component file accepted, as Space's 250 MB app size.
pub const MAX_COMPONENT_BYTES: u64 = 250 * 1000 * 1000;
/// The largest total size of the files under a Micro's `src`, as Space's 250 MB app size.
pub const MAX_SRC_BYTES: u64 = 250 * 1000 * 1000;
/// The app version a manifest without `version` gets.
pub const DEFAULT_APP_VERSION: &str = "0.0.0";
/// The engine of a Micro that is a WebAssembly component: the default.
pub const ENGINE: &str = "wasm32-wasip2";
/// The engine of a Micro that serves files from a folder.
pub const STATIC_ENGINE: &str = "static";

/// An error in a manifest: where it is (file and field) and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read.
    #[error("cannot read `{}`: {error}", file.display())]
    Read {
        /// The manifest's path.
        file: PathBuf,
        /// Why reading failed.
        error: std::io::Error,
    },
    /// The TOML is malformed or a field has a bad value (with line, column and caret).
    #[error("{}: invalid `{field}`\n{message}", file.display())]
    Parse {
        /// The manifest's path.
        file: PathBuf,
        /// The field's path, e.g. `micros[1].path`.
        field: String,
        /// The parser's message, with the position in the file.
        message: String,
    },
    /// The manifest parses but breaks a rule that spans fields or files.
    #[error("{}: `{field}`: {message}\n  help: {help}", file.display())]
    Invalid {
        /// The manifest's path.
        file: PathBuf,
        /// The field's path, e.g. `micros[1].path`.
        field: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        help: String,
    },
}

/// A parsed and validated `Spacefile.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file this was read from.
    pub file: PathBuf,
    /// The folder holding the manifest: `src` paths are relative to it.
    pub dir: PathBuf,
    /// `app_name = "notes"`: the app's name, if given.
    pub app_name: Option<String>,
    /// `version = "0.1.0"`: becomes `DETA_SPACE_APP_VERSION`.
    pub version: String,
    /// The app's Micros, in manifest order; exactly one is primary.
    pub micros: Vec<Micro>,
}

/// One Micro of the app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Micro {
    /// `name = "web"`: unique in the app.
    pub name: MicroName,
    /// `src = "web"`: the Micro's folder relative to the manifest, mounted read-only at `/`.
    pub src: PathBuf,
    /// `component = "target/wasm32-wasip2/release/web.wasm"`: relative to `src`; required of a
    /// component Micro, refused on a static one (empty there).
    #[serde(default)]
    pub component: PathBuf,
    /// `engine = "static"`: how the Micro answers; default `"wasm32-wasip2"`, a component.
    #[serde(default)]
    pub engine: Engine,
    /// `serve = "dist"`: the folder a static Micro serves, relative to `src`; default `src`
    /// itself. Only for `engine = "static"`.
    #[serde(default)]
    pub serve: Option<PathBuf>,
    /// `primary = true`: the Micro that serves `/`.
    #[serde(default, rename = "primary")]
    primary_field: Option<bool>,
    /// `path = "/api"`: where a non-primary Micro is served; default `/<name>`.
    #[serde(default, rename = "path")]
    path_field: Option<MicroPath>,
    /// `commands = ["cargo build --release --target wasm32-wasip2"]`: build steps, run in `src`.
    #[serde(default)]
    pub commands: Vec<String>,
    /// `public = true`: every route is open to anyone; otherwise every route is private.
    #[serde(default)]
    pub public: Option<bool>,
    /// `public_routes = ["/public/*"]`: routes open to anyone, relative to the Micro's own path;
    /// `*` matches any run of characters. Public routes win over keys.
    #[serde(default)]
    pub public_routes: Vec<RoutePattern>,
    /// `allowed_outbound_hosts = ["https://api.example.com"]`: the only destinations this Micro
    /// may reach with outbound HTTP; absent, any public one. It narrows, never widens: private
    /// addresses stay closed unless the operator opens them.
    #[serde(default)]
    pub allowed_outbound_hosts: Option<Vec<OutboundHost>>,
    /// `[micros.presets]`: variables the operator may set.
    #[serde(default)]
    pub presets: Presets,
    /// `[[micros.actions]]`: scheduled actions (run by a later release).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Whether this Micro is the primary, resolved by validation.
    #[serde(skip)]
    primary: bool,
    /// The path this Micro is served at, resolved by validation (`/` for the primary).
    #[serde(skip)]
    route: String,
}

impl Micro {
    /// Whether this Micro serves every path no other Micro claims.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// The path prefix this Micro is served at: `/` for the primary, else `/api` or `/<name>`.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The Micro's folder on the host.
    pub fn src_dir(&self, manifest: &Manifest) -> PathBuf {
        manifest.dir.join(&self.src)
    }

    /// The Micro's component file on the host.
    pub fn component_path(&self, manifest: &Manifest) -> PathBuf {
        self.src_dir(manifest).join(&self.component)
    }

    /// Whether this Micro serves files (`engine = "static"`) rather than running a component.
    pub fn is_static(&self) -> bool {
        self.engine == Engine::Static
    }

    /// The folder a static Micro serves, on the host.
    pub fn serve_dir(&self, manifest: &Manifest) -> PathBuf {
        match &self.serve {
            Some(serve) => self.src_dir(manifest).join(serve),
            None => self.src_dir(manifest),
        }
    }
}

/// `[micros.presets]`: what an operator may set for a Micro.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    /// `[[micros.presets.env]]`: environment variables with an optional default.
    #[serde(default)]
    pub env: Vec<EnvPreset>,
    /// `api_keys = true`: private routes also accept an app key in `X-Space-App-Key`.
    #[serde(default)]
    pub api_keys: bool,
}

/// `[[micros.presets.env]] name = "GREETING"`: a variable the Micro reads, set by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPreset {
    /// `name = "GREETING"`: the variable's name.
    pub name: EnvName,
    /// `description = "How to greet"`: shown to operators.
    #[serde(default)]
    pub description: Option<String>,
    /// `default = "hello"`: the value unless the operator sets one.
    #[serde(default)]
    pub default: Option<String>,
}

/// `[[micros.actions]] id = "cleanup"`: a scheduled action of a Micro.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// `id = "cleanup"`: unique in the app.
    pub id: ActionId,
    /// `name = "Clean up"`: shown to operators.
    pub name: String,
    /// `description = "Deletes stale sessions"`: optional.
    #[serde(default)]
    pub description: Option<String>,
    /// `trigger = "schedule"`: the only trigger.
    pub trigger: fields::Trigger,
    /// `default_interval = "0/15 * * * *"`: a cron expression or a rate such as `5 minutes`.
    pub default_interval: Interval,
}

/// The manifest as written, before cross-field validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(rename = "v")]
    _v: fields::Version,
    #[serde(default)]
    app_name: Option<fields::Text>,
    #[serde(default)]
    version: Option<fields::Text>,
    #[serde(default)]
    micros: Vec<Micro>,
}

impl Manifest {
    /// Reads and validates a manifest: `path` is an app folder or the `Spacefile.toml` itself.
    ///
    /// This checks everything that the manifest alone decides; [`Manifest::check_files`] checks
    /// the files it names (they may only exist after `micros build`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let file = if path.is_dir() {
            path.join(MANIFEST_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|error| ManifestError::Read {
            file: file.clone(),
            error,
        })?;
        Self::parse(&file, &text)
    }

    /// Parses and validates manifest text; `file` names it in errors and anchors `src` paths.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| ManifestError::Parse {
            file: file.to_path_buf(),
            field: "(document)".into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let raw: RawManifest = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            ManifestError::Parse {
                file: file.to_path_buf(),
                field: if field == "." {
                    "(document)".into()
                } else {
                    field
                },
                message: e.into_inner().to_string().trim_end().to_string(),
            }
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut manifest = Manifest {
            file: file.to_path_buf(),
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
            app_name: raw.app_name.map(|t| t.as_str().to_string()),
            version: raw.version.map_or_else(
                || DEFAULT_APP_VERSION.to_string(),
                |t| t.as_str().to_string(),
            ),
            micros: raw.micros,
        };
        validate::manifest(&mut manifest)?;
        Ok(manifest)
    }

    /// Checks the files the manifest names: each `src` folder and its size, each component.
    pub fn check_files(&self) -> Result<(), ManifestError> {
        validate::files(self)
    }

    /// The primary Micro.
    pub fn primary(&self) -> &Micro {
        self.micros
            .iter()
            .find(|m| m.is_primary())
            .unwrap_or(&self.micros[0])
    }

    fn invalid(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.clone(),
            field: field.into(),
            message: message.into(),
            help: help.into(),
        }
    }
}
