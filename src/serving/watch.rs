//! `micros up --watch`: rebuilds a Micro when a file in its `src` changes and swaps it in; a
//! static Micro's files are read again when its folder changes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::app::App;

/// How long the files must stay quiet before a rebuild starts: an editor's save, a `git
/// checkout` or a formatter is several writes in a row, and they should cost one build.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(300);

/// Folders that are never watched: build outputs, installed tools and packages, version
/// control. Besides these, every hidden file or folder (`.git`, `.venv`, an editor's
/// `.app.py.swp`) and every backup file ending in `~` is left alone.
pub const IGNORED_FOLDERS: &[&str] = &["target", "node_modules", "__pycache__"];

/// What one Micro's watch looks at.
struct Watched {
    /// The Micro's name.
    name: String,
    /// Its `src`, canonical.
    src: PathBuf,
    /// Its component file, canonical where it exists.
    component: PathBuf,
    /// Whether it has build `commands`: then a change under `src` rebuilds it; without them,
    /// only a new component file is swapped in (other files are read from disk as they are).
    builds: bool,
    /// The folder a static Micro serves, canonical: a change in it reads the files again.
    serve: Option<PathBuf>,
}

/// What a change calls for; the larger of two wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Read the component or the static files again.
    Reload,
    /// Run the build `commands`, then reload.
    Build,
}

impl Watched {
    /// What a change at `path` calls for, if anything.
    fn wants(&self, path: &Path) -> Option<Step> {
        if let Some(serve) = &self.serve {
            if let Ok(relative) = path.strip_prefix(serve) {
                // The build's output, or files served as they are: read again, never built
                // (a build writing there would start itself again).
                return watched(relative).then_some(Step::Reload);
            }
        } else if !self.builds {
            return (path == self.component).then_some(Step::Reload);
        } else if path == self.component {
            // The build's own output.
            return None;
        }
        if !self.builds {
            return None;
        }
        match path.strip_prefix(&self.src) {
            Ok(relative) => watched(relative).then_some(Step::Build),
            Err(_) => None,
        }
    }

    /// Whether its folders are watched (not only its component's).
    fn walks(&self) -> bool {
        self.builds || self.serve.is_some()
    }
}

/// Whether every part of `relative` is a watched name.
fn watched(relative: &Path) -> bool {
    relative
        .components()
        .all(|part| watched_name(part.as_os_str()))
}

/// Whether a file or folder of this name is watched (see [`IGNORED_FOLDERS`]).
fn watched_name(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    !(name.starts_with('.') || name.ends_with('~') || IGNORED_FOLDERS.contains(&name.as_ref()))
}

/// Starts watching every Micro of `app`: returns the loop that rebuilds and swaps, to be
/// spawned beside the server. Each batch of changes (see [`DEFAULT_SETTLE`]) runs the changed
/// Micros' build `commands` and then [`App::reload`]; a failed build or an unusable component
/// is logged and the previous component keeps serving. Fails at once if the folders cannot be
/// watched (e.g. the system's inotify limits), so that `--watch` is never silently off.
pub fn watch(app: &App) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let manifest = app.manifest();
    let mut watched = Vec::with_capacity(manifest.micros.len());
    for micro in &manifest.micros {
        let src = micro.src_dir(manifest);
        let src = src
            .canonicalize()
            .with_context(|| format!("--watch: cannot open `{}`", src.display()))?;
        let component = micro
            .component_path(manifest)
            .canonicalize()
            .unwrap_or_else(|_| src.join(&micro.component));
        let serve = if micro.is_static() {
            let serve = micro.serve_dir(manifest);
            Some(
                serve
                    .canonicalize()
                    .with_context(|| format!("--watch: cannot open `{}`", serve.display()))?,
            )
        } else {
            None
        };
        watched.push(Watched {
            name: micro.name.to_string(),
            src,
            component,
            builds: !micro.commands.is_empty(),
            serve,
        });
    }

    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .context("--watch: cannot watch files")?;
    let mut folders = BTreeSet::new();
    for micro in &watched {
        if micro.builds {
            folders.extend(walk(&micro.src));
        }
        if let Some(serve) = &micro.serve {
            folders.extend(walk(serve));
        } else if !micro.builds
            && let Some(parent) = micro.component.parent()
        {
            folders.insert(parent.to_path_buf());
        }
    }
    for folder in &folders {
        watch_folder(&mut watcher, folder)?;
    }
    tracing::info!(
        folders = folders.len(),
        "watching the Micros' sources; a change rebuilds and swaps in the Micro"
    );

    let app = app.clone();
    Ok(async move {
        loop {
            let mut changed: BTreeMap<usize, Step> = BTreeMap::new();
            // Wait for a change, then for the files to settle.
            let mut wait = None;
            loop {
                let next = match wait {
                    None => received.recv().await,
                    Some(settle) => match tokio::time::timeout(settle, received.recv()).await {
                        Ok(next) => next,
                        Err(_) => break,
                    },
                };
                let Some(event) = next else { return };
                let event: notify::Event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!("--watch: {error}");
                        continue;
                    }
                };
                if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
                    continue;
                }
                for path in &event.paths {
                    if matches!(event.kind, EventKind::Create(_)) && path.is_dir() {
                        // A new folder: watch it (and what is already in it) too. An empty one
                        // changes nothing to build; one moved in with files does.
                        for folder in walk(path) {
                            if watched
                                .iter()
                                .any(|m| m.walks() && m.wants(&folder).is_some())
                                && folders.insert(folder.clone())
                                && let Err(error) = watch_folder(&mut watcher, &folder)
                            {
                                tracing::warn!("{error:#}");
                            }
                        }
                        if std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
                        {
                            continue;
                        }
                    }
                    for (index, micro) in watched.iter().enumerate() {
                        if let Some(step) = micro.wants(path) {
                            let wanted = changed.entry(index).or_insert(step);
                            *wanted = (*wanted).max(step);
                        }
                    }
                }
                if !changed.is_empty() {
                    wait = Some(DEFAULT_SETTLE);
                }
            }
            for (index, step) in changed {
                rebuild(&app, index, &watched[index].name, step == Step::Build).await;
            }
        }
    })
}

/// Watches one folder (not its subfolders: [`walk`] chose which of those to watch).
fn watch_folder(watcher: &mut notify::RecommendedWatcher, folder: &Path) -> anyhow::Result<()> {
    watcher
        .watch(folder, RecursiveMode::NonRecursive)
        .with_context(|| {
            format!(
                "--watch: cannot watch `{}` (on Linux, raising `fs.inotify.max_user_watches` may help)",
                folder.display()
            )
        })
}

/// `root` and every folder under it that is watched, not following symbolic links.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut folders = vec![root.to_path_buf()];
    let mut next = 0;
    while let Some(folder) = folders.get(next).cloned() {
        next += 1;
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if is_dir && watched_name(&entry.file_name()) {
                folders.push(entry.path());
            }
        }
    }
    folders
}

/// Runs the Micro's build `commands` (if `build`) and swaps in what they built; says in the log
/// what happened, and on any failure why the previous version is still serving.
async fn rebuild(app: &App, index: usize, name: &str, build: bool) {
    let manifest = app.manifest();
    if build {
        tracing::info!(micro = name, "a source changed: rebuilding");
    }
    if build
        && let Err(error) =
            crate::services::builder::build_micro(manifest, index, &manifest.micros[index]).await
    {
        tracing::error!(
            micro = name,
            "rebuild failed; still serving the previous version: {error:#}"
        );
        return;
    }
    let swap = app.clone();
    let name_owned = name.to_string();
    match tokio::task::spawn_blocking(move || swap.reload(&name_owned)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(
            micro = name,
            "the rebuilt component cannot be served; still serving the previous version: {error:#}"
        ),
        Err(error) => tracing::error!(
            micro = name,
            "reloading stopped; still serving the previous version: {error}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(builds: bool) -> Watched {
        Watched {
            name: "web".into(),
            src: PathBuf::from("/app/web"),
            component: PathBuf::from("/app/web/target/wasm32-wasip2/release/web.wasm"),
            builds,
            serve: None,
        }
    }

    #[test]
    fn a_built_micro_rebuilds_for_its_sources_not_for_build_outputs_or_hidden_files() {
        let web = micro(true);
        let wants = |path: &str| web.wants(Path::new(path));
        assert_eq!(wants("/app/web/src/lib.rs"), Some(Step::Build));
        assert_eq!(wants("/app/web/Cargo.toml"), Some(Step::Build));
        for path in [
            "/app/web/target/wasm32-wasip2/release/web.wasm",
            "/app/web/target/debug/build.log",
            "/app/web/node_modules/x/index.js",
            "/app/web/pkg/__pycache__/m.pyc",
            "/app/web/.app.py.swp",
            "/app/web/.git/index",
            "/app/web/app.py~",
            "/app/other/app.py",
        ] {
            assert_eq!(wants(path), None, "{path}");
        }
    }

    #[test]
    fn a_micro_without_commands_reloads_only_for_its_component() {
        let web = micro(false);
        assert_eq!(
            web.wants(Path::new("/app/web/target/wasm32-wasip2/release/web.wasm")),
            Some(Step::Reload)
        );
        assert_eq!(web.wants(Path::new("/app/web/src/lib.rs")), None);
    }

    #[test]
    fn a_static_micro_reads_its_folder_again_and_builds_for_sources_outside_it() {
        let front = Watched {
            serve: Some(PathBuf::from("/app/web/dist")),
            ..micro(true)
        };
        let wants = |path: &str| front.wants(Path::new(path));
        assert_eq!(wants("/app/web/dist/index.html"), Some(Step::Reload));
        assert_eq!(wants("/app/web/dist/.tmp-write"), None);
        assert_eq!(wants("/app/web/src/App.svelte"), Some(Step::Build));
        assert_eq!(wants("/app/web/node_modules/x.js"), None);
        // Serving `src` itself, with commands: a change reads the files again, never builds
        // (the build writing there would start itself again).
        let plain = Watched {
            serve: Some(PathBuf::from("/app/web")),
            ..micro(true)
        };
        assert_eq!(
            plain.wants(Path::new("/app/web/index.html")),
            Some(Step::Reload)
        );
        let unbuilt = Watched {
            serve: Some(PathBuf::from("/app/web/dist")),
            ..micro(false)
        };
        assert_eq!(unbuilt.wants(Path::new("/app/web/src/App.svelte")), None);
        assert_eq!(
            unbuilt.wants(Path::new("/app/web/dist/a.js")),
            Some(Step::Reload)
        );
    }
}
