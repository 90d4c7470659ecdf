//! The translation itself: each field of a `Spacefile` into the manifest's, with a note for
//! everything that is not carried over as it was.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::node;
use super::python::{self, COMPONENT, SUPPORT_DIR};
use super::space::{SpaceFile, SpaceMicro, brief, discovery_front_matter};
use super::{Imported, Note, NoteKind};
use fields::{actions, dropped, presets, routes};

mod fields;
use crate::spec::manifest::MicroName;

/// What Space's engines become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A folder of files; the engine's output folder and build, if Space supplied them.
    Static {
        serve: Option<&'static str>,
        build: Option<&'static [&'static str]>,
        caveat: Option<&'static str>,
    },
    /// A Python app, ASGI or WSGI.
    Python,
    /// A Node app.
    Node,
    /// A program of its own (`custom`), or an engine this does not know.
    Custom,
}

/// The build of Space's front-end engines when a Micro gave none.
const NPM_BUILD: &[&str] = &["npm install", "npm run build"];

fn kind(engine: &str) -> Kind {
    match engine {
        "static" => Kind::Static {
            serve: None,
            build: None,
            caveat: None,
        },
        "react" => Kind::Static {
            serve: Some("build"),
            build: Some(NPM_BUILD),
            caveat: None,
        },
        "vue" => Kind::Static {
            serve: Some("dist"),
            build: Some(NPM_BUILD),
            caveat: None,
        },
        "svelte" => Kind::Static {
            serve: Some("public"),
            build: Some(NPM_BUILD),
            caveat: None,
        },
        "next" => Kind::Static {
            serve: Some("out"),
            build: Some(NPM_BUILD),
            caveat: Some(
                "a Next app is served as its static export (`output: \"export\"` in \
                 next.config.js, written to `out`): server-side rendering and API routes need a \
                 Node server, which micros does not run; move them to a Micro of their own",
            ),
        },
        "nuxt" => Kind::Static {
            serve: Some(".output/public"),
            build: Some(&["npm install", "npx nuxi generate"]),
            caveat: Some(
                "a Nuxt app is served as its static site (`nuxi generate`): server routes need \
                 a Node server, which micros does not run",
            ),
        },
        "svelte-kit" => Kind::Static {
            serve: Some("build"),
            build: Some(NPM_BUILD),
            caveat: Some(
                "a SvelteKit app is served as a static site: build it with \
                 `@sveltejs/adapter-static` (output `build`); server routes and `+server.js` \
                 endpoints need a Node server, which micros does not run",
            ),
        },
        "python3.8" | "python3.9" => Kind::Python,
        "nodejs14" | "nodejs14.x" | "nodejs16" | "nodejs16.x" | "nodejs18" | "nodejs18.x" => {
            Kind::Node
        }
        _ => Kind::Custom,
    }
}

/// The manifest being written: lines of TOML.
#[derive(Default)]
pub(super) struct Toml(String);

impl Toml {
    pub(super) fn line(&mut self, line: impl AsRef<str>) {
        self.0.push_str(line.as_ref());
        self.0.push('\n');
    }

    pub(super) fn string(&mut self, key: &str, value: &str) {
        self.line(format!("{key} = {}", quote(value)));
    }

    pub(super) fn strings(&mut self, key: &str, values: &[String]) {
        if values.len() <= 2 && values.iter().map(String::len).sum::<usize>() < 60 {
            let joined: Vec<String> = values.iter().map(|v| quote(v)).collect();
            self.line(format!("{key} = [{}]", joined.join(", ")));
            return;
        }
        self.line(format!("{key} = ["));
        for value in values {
            self.line(format!("  {},", quote(value)));
        }
        self.line("]");
    }
}

/// A TOML string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Translates `spacefile` of the app in `dir`.
pub(super) fn translate(
    dir: &Path,
    spacefile: &SpaceFile,
    discovery: Option<&str>,
) -> anyhow::Result<Imported> {
    let mut notes = Vec::new();
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut toml = Toml::default();
    let mut note = |kind, field: &str, text: String| {
        notes.push(Note {
            kind,
            field: field.to_string(),
            text,
        });
    };
    toml.line("# Written by `micros import` from this app's Space `Spacefile`; what it assumed,");
    toml.line("# dropped or left to do by hand, it printed. Reference: docs/manifest.md.");
    toml.line("v = 1");
    let front = discovery.map(discovery_front_matter).unwrap_or_default();
    match (
        &spacefile.app_name,
        front.get("app_name").and_then(Value::as_str),
    ) {
        (Some(name), _) => toml.string("app_name", name),
        (None, Some(name)) => {
            toml.string("app_name", name);
            note(
                NoteKind::Assumed,
                "app_name",
                format!("`{name}`, from the front matter of `Discovery.md`"),
            );
        }
        (None, None) => note(
            NoteKind::Assumed,
            "app_name",
            "none given: name the app when you push it (`micros push --app NAME`)".into(),
        ),
    }
    if let Some(version) = front.get("version").and_then(Value::as_str) {
        toml.string("version", version);
    }
    if let Some(icon) = &spacefile.icon {
        note(
            NoteKind::Dropped,
            "icon",
            format!("`{}`: micros shows no app icons", brief(icon)),
        );
    }
    for (key, value) in &spacefile.other {
        note(
            NoteKind::Dropped,
            key,
            format!(
                "`{}`: not a field of Space's Spacefile, nor of micros'",
                brief(value)
            ),
        );
    }
    let mut needs = Needs::default();
    for (index, micro) in spacefile.micros.iter().enumerate() {
        let mut micro_notes = Vec::new();
        let needed = translate_micro(dir, index, micro, &mut toml, &mut micro_notes, &mut files)?;
        needs.python |= needed.python;
        needs.javascript |= needed.javascript;
        notes.extend(micro_notes);
    }
    if needs.python || needs.javascript {
        for (path, bytes) in crate::services::starter::wit_files() {
            files.push((path, bytes.to_vec()));
        }
    }
    if needs.javascript {
        for (path, bytes) in crate::services::starter::space_js_files(node::SUPPORT_DIR)? {
            files.push((path, bytes.to_vec()));
        }
    }
    if needs.python {
        files.push((
            Path::new(SUPPORT_DIR).join("micro.py"),
            crate::services::starter::python_toolkit()?.to_vec(),
        ));
        files.push((
            Path::new(SUPPORT_DIR).join("deta.py"),
            crate::services::starter::python_deta()?.to_vec(),
        ));
    }
    notes.sort_by_key(|n| n.kind);
    Ok(Imported {
        manifest: toml.0,
        files,
        notes,
    })
}

/// The notes of one Micro, each field named under it.
pub(super) struct Notes<'a> {
    here: String,
    list: &'a mut Vec<Note>,
}

impl Notes<'_> {
    pub(super) fn add(&mut self, kind: NoteKind, field: &str, text: String) {
        self.list.push(Note {
            kind,
            field: if field.is_empty() {
                self.here.clone()
            } else {
                format!("{}.{field}", self.here)
            },
            text,
        });
    }
}

/// What a translated Micro needs written beside the manifest.
#[derive(Debug, Default, Clone, Copy)]
struct Needs {
    /// The Python toolkit and `deta.py`.
    python: bool,
    /// The JavaScript shims and `world.wit`.
    javascript: bool,
}

/// Translates one Micro into `toml`; what it needs written beside the manifest.
fn translate_micro(
    dir: &Path,
    index: usize,
    micro: &SpaceMicro,
    toml: &mut Toml,
    notes: &mut Vec<Note>,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
) -> anyhow::Result<Needs> {
    let here = format!("micros[{index}]");
    let mut notes = Notes {
        here: here.clone(),
        list: notes,
    };
    let name = micro
        .name
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("`{here}` has no `name`, which Space required too"))?;
    name.parse::<MicroName>()
        .map_err(|e| anyhow::anyhow!("`{here}.name`: {e}"))?;
    let src = clean_path(micro.src.as_deref().unwrap_or("."));
    if micro.src.is_none() {
        notes.add(
            NoteKind::Assumed,
            "src",
            "none given: the app's folder".into(),
        );
    }
    if Path::new(&src).is_absolute() || src.split('/').any(|part| part == "..") {
        anyhow::bail!("`{here}.src`: `{src}` is outside the app's folder");
    }
    let engine = micro.engine.as_deref().unwrap_or_else(|| {
        notes.add(
            NoteKind::Assumed,
            "engine",
            "none given (Space required one): taken as `static`".into(),
        );
        "static"
    });
    let kind = kind(engine);
    toml.line("");
    // Debug-quoted: a YAML value may hold a line break, which would end the comment.
    toml.line(format!("[[micros]]  # Space's engine: {engine:?}"));
    toml.string("name", name);
    toml.string("src", &src);
    let src_dir = dir.join(&src);
    let up = "../".repeat(
        src.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .count(),
    );
    let mut commands: Vec<String> = micro.commands.clone().unwrap_or_default();
    let mut python = false;
    let mut javascript = false;
    let mut runs_code = true;
    match kind {
        Kind::Static {
            serve,
            build,
            caveat,
        } => {
            runs_code = false;
            toml.string("engine", "static");
            let serve = match (&micro.serve, serve) {
                (Some(given), _) => clean_path(given),
                (None, default) => {
                    let found = [default.unwrap_or("."), "dist", "build", "public", "out"]
                        .into_iter()
                        .find(|folder| src_dir.join(folder).is_dir());
                    let chosen = found.or(default).unwrap_or(".");
                    notes.add(
                        NoteKind::Assumed,
                        "serve",
                        format!(
                            "none given: `{chosen}`{}",
                            if found.is_some() {
                                ", the output folder found in `src`"
                            } else {
                                ", where the engine's build writes (build it to check)"
                            }
                        ),
                    );
                    chosen.to_string()
                }
            };
            if serve != "." {
                toml.string("serve", &serve);
            }
            if commands.is_empty()
                && let Some(build) = build
            {
                commands = build.iter().map(ToString::to_string).collect();
                notes.add(
                    NoteKind::Assumed,
                    "commands",
                    format!("none given: `{}`, the engine's build", build.join("`, `")),
                );
            }
            if let Some(caveat) = caveat {
                notes.add(NoteKind::ByHand, "engine", caveat.into());
            }
        }
        Kind::Python => {
            let target = python::target(
                &src_dir,
                micro.run.as_deref(),
                &format!("{here}.run"),
                notes.list,
            );
            toml.string("component", COMPONENT);
            let requirements = src_dir.join("requirements.txt");
            let has_requirements = requirements.is_file();
            if let Ok(text) = std::fs::read_to_string(&requirements)
                && python::requirement(&text, "deta").is_some()
            {
                notes.add(
                    NoteKind::Assumed,
                    "src/requirements.txt",
                    format!(
                        "`deta` is left out of the install (the name on PyPI now belongs to \
                         another project): `{SUPPORT_DIR}/deta.py`, a client with the same API \
                         over the app's own Base and Drive, is the `deta` the app imports"
                    ),
                );
            }
            if let Ok(text) = std::fs::read_to_string(&requirements)
                && let Some(pins) = python::fastapi_pins(&text)
            {
                notes.add(NoteKind::ByHand, "src/requirements.txt", pins);
            }
            let (module, entry) = match &target {
                Some(target) => python::entry(name, target),
                None => python::entry(
                    name,
                    &python::Target {
                        module: "main".into(),
                        attr: "app".into(),
                        interface: python::Interface::Asgi,
                    },
                ),
            };
            files.push((
                Path::new(SUPPORT_DIR).join(format!("{module}.py")),
                entry.into_bytes(),
            ));
            let ours = python::commands(name, &up, has_requirements);
            if !commands.is_empty() {
                notes.add(
                    NoteKind::Assumed,
                    "commands",
                    "kept, and run before the Python build".into(),
                );
            }
            commands.extend(ours);
            python = true;
        }
        Kind::Node => {
            toml.string("component", node::COMPONENT);
            let module = node::main_module(&src_dir, micro.run.as_deref());
            let (file, entry) = node::entry(name, &src, &module);
            files.push((Path::new(node::SUPPORT_DIR).join(file), entry.into_bytes()));
            match node_servers(&src_dir) {
                Some(servers) => notes.add(
                    NoteKind::ByHand,
                    "engine",
                    format!(
                        "`{engine}` ran a Node server, and its framework (`{servers}`) listens on \
                         a socket, which a Micro cannot: `{module}` must export a fetch-style app \
                         instead (Hono's `export default app` runs as it is)"
                    ),
                ),
                None => notes.add(
                    NoteKind::Assumed,
                    "engine",
                    format!(
                        "`{module}` is served: it exports a fetch-style app (`export default app` \
                         of Hono, or `{{ fetch }}`), bundled with its npm packages by esbuild \
                         for componentize-js"
                    ),
                ),
            }
            if let Some(run) = &micro.run {
                notes.add(
                    NoteKind::Assumed,
                    "run",
                    format!("`{run}`: its module, `{module}`, is what the Micro serves"),
                );
            }
            let ours = node::commands(name, &up, src_dir.join("package.json").is_file());
            if !commands.is_empty() {
                notes.add(
                    NoteKind::Assumed,
                    "commands",
                    "kept, and run before the JavaScript build".into(),
                );
            }
            commands.extend(ours);
            javascript = true;
        }
        Kind::Custom => {
            toml.string("component", "app.wasm");
            notes.add(
                NoteKind::ByHand,
                "engine",
                format!(
                    "`{engine}` ran a native program{}: build the Micro as a `wasm32-wasip2` \
                     component instead (Rust: `cargo build --target wasm32-wasip2`; Go: TinyGo \
                     with `-target=wasip2`), write it to `app.wasm` in `src`, and its build into \
                     `commands`",
                    micro
                        .run
                        .as_deref()
                        .map(|r| format!(" (`{r}`)"))
                        .unwrap_or_default()
                ),
            );
        }
    }
    if let Some(primary) = micro.primary {
        toml.line(format!("primary = {primary}"));
    }
    if let Some(path) = &micro.path {
        let path = format!("/{}", path.trim_matches('/'));
        toml.string("path", &path);
    }
    if !commands.is_empty() {
        toml.strings("commands", &commands);
    }
    routes(micro, toml, &mut notes);
    dropped(micro, &kind, &mut notes);
    presets(micro, runs_code, toml, &mut notes);
    actions(micro, runs_code, toml, &mut notes);
    Ok(Needs { python, javascript })
}

/// A path as the manifest writes it: without `./` in front or `/` behind; `.` for the folder.
fn clean_path(path: &str) -> String {
    let trimmed = path.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        ".".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The server frameworks a Node Micro's `package.json` depends on, which listen on a socket.
fn node_servers(src: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src.join("package.json")).ok()?;
    let package: Value = serde_json::from_str(&text).ok()?;
    let servers: Vec<&str> = ["express", "koa", "fastify", "@hapi/hapi", "restify"]
        .into_iter()
        .filter(|name| package["dependencies"].get(name).is_some())
        .collect();
    (!servers.is_empty()).then(|| servers.join("`, `"))
}
