//! Rules that span fields or touch files, each a named check run once at load.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use super::{
    MAX_ACTIONS_PER_APP, MAX_ACTIONS_PER_MICRO, MAX_COMPONENT_BYTES, MAX_MICROS, MAX_SRC_BYTES,
    Manifest, ManifestError,
};

/// Runs every rule the manifest alone decides, and resolves each Micro's role and route.
pub(super) fn manifest(manifest: &mut Manifest) -> Result<(), ManifestError> {
    validate_micro_count(manifest)?;
    validate_engines(manifest)?;
    validate_unique_names(manifest)?;
    validate_primary(manifest)?;
    validate_paths(manifest)?;
    validate_public(manifest)?;
    validate_presets(manifest)?;
    validate_actions(manifest)?;
    Ok(())
}

fn validate_micro_count(m: &Manifest) -> Result<(), ManifestError> {
    match m.micros.len() {
        0 => Err(m.invalid(
            "micros",
            "the app has no Micro",
            "add a `[[micros]]` table with `name`, `src` and `component`",
        )),
        n if n > MAX_MICROS => Err(m.invalid(
            "micros",
            format!("the app has {n} Micros; at most {MAX_MICROS} are allowed"),
            "split the app or merge Micros",
        )),
        _ => Ok(()),
    }
}

/// A component Micro names its component; a static one names none, and nothing that runs code
/// (actions, preset variables, outbound hosts), and serves a folder inside its `src`.
fn validate_engines(m: &Manifest) -> Result<(), ManifestError> {
    for (i, micro) in m.micros.iter().enumerate() {
        let here = format!("micros[{i}]");
        if !micro.is_static() {
            if micro.component.as_os_str().is_empty() {
                return Err(m.invalid(
                    format!("{here}.component"),
                    format!("the Micro `{}` names no component", micro.name),
                    "set `component` to the built .wasm file, relative to `src` \
                     (e.g. \"target/wasm32-wasip2/release/web.wasm\"), or set \
                     engine = \"static\" to serve files",
                ));
            }
            if micro.serve.is_some() {
                return Err(m.invalid(
                    format!("{here}.serve"),
                    "`serve` is for static Micros: a component serves what its code answers",
                    "remove `serve`, or set engine = \"static\"",
                ));
            }
            continue;
        }
        let refused = [
            ("component", !micro.component.as_os_str().is_empty()),
            ("actions", !micro.actions.is_empty()),
            ("presets.env", !micro.presets.env.is_empty()),
            (
                "allowed_outbound_hosts",
                micro.allowed_outbound_hosts.is_some(),
            ),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(m.invalid(
                format!("{here}.{field}"),
                format!("a static Micro runs no code, so it has no `{field}`"),
                format!("remove `{field}`, or move it to a component Micro of the app"),
            ));
        }
        if let Some(serve) = &micro.serve
            && (serve.is_absolute()
                || serve.components().any(|c| {
                    !matches!(
                        c,
                        std::path::Component::Normal(_) | std::path::Component::CurDir
                    )
                }))
        {
            return Err(m.invalid(
                format!("{here}.serve"),
                format!("`{}` is not a folder inside `src`", serve.display()),
                "give a relative path without `..`, such as \"dist\"",
            ));
        }
    }
    Ok(())
}

fn validate_unique_names(m: &Manifest) -> Result<(), ManifestError> {
    let mut seen = HashMap::new();
    for (i, micro) in m.micros.iter().enumerate() {
        if let Some(first) = seen.insert(micro.name.as_str(), i) {
            return Err(m.invalid(
                format!("micros[{i}].name"),
                format!(
                    "the name `{}` is already used by micros[{first}]",
                    micro.name
                ),
                "give every Micro its own name",
            ));
        }
    }
    Ok(())
}

fn validate_primary(m: &mut Manifest) -> Result<(), ManifestError> {
    if m.micros.len() == 1 {
        if m.micros[0].primary_field == Some(false) {
            return Err(m.invalid(
                "micros[0].primary",
                "a lone Micro is always the primary",
                "remove `primary = false`",
            ));
        }
        m.micros[0].primary = true;
        return Ok(());
    }
    let primaries: Vec<usize> = (0..m.micros.len())
        .filter(|&i| m.micros[i].primary_field == Some(true))
        .collect();
    match primaries.as_slice() {
        [one] => {
            let one = *one;
            for (i, micro) in m.micros.iter_mut().enumerate() {
                micro.primary = i == one;
            }
            Ok(())
        }
        [] => Err(m.invalid(
            "micros",
            format!("the app has {} Micros and none is primary", m.micros.len()),
            "set `primary = true` on the Micro that serves `/`",
        )),
        [_, second, ..] => Err(m.invalid(
            format!("micros[{second}].primary"),
            format!("{} Micros are primary; exactly one may be", primaries.len()),
            "keep `primary = true` on one Micro only",
        )),
    }
}

fn validate_paths(m: &mut Manifest) -> Result<(), ManifestError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..m.micros.len() {
        let micro = &m.micros[i];
        let route = if micro.primary {
            if let Some(path) = &micro.path_field {
                return Err(m.invalid(
                    format!("micros[{i}].path"),
                    format!(
                        "the primary Micro is served at `/`, so `path = \"{path}\"` cannot apply"
                    ),
                    "remove `path` from the primary Micro",
                ));
            }
            "/".to_string()
        } else {
            micro
                .path_field
                .as_ref()
                .map_or_else(|| format!("/{}", micro.name), |p| p.as_str().to_string())
        };
        if let Some(first) = seen.insert(route.to_ascii_lowercase(), i) {
            return Err(m.invalid(
                format!("micros[{i}].path"),
                format!("the path `{route}` is already used by micros[{first}]"),
                "give every Micro its own `path` (the default is `/<name>`)",
            ));
        }
        m.micros[i].route = route;
    }
    Ok(())
}

fn validate_public(m: &Manifest) -> Result<(), ManifestError> {
    for (i, micro) in m.micros.iter().enumerate() {
        if micro.public.is_some() && !micro.public_routes.is_empty() {
            return Err(m.invalid(
                format!("micros[{i}].public_routes"),
                "`public` and `public_routes` are both set",
                "use `public = true` to open every route, or `public_routes` to open some, not both",
            ));
        }
    }
    Ok(())
}

fn validate_presets(m: &Manifest) -> Result<(), ManifestError> {
    for (i, micro) in m.micros.iter().enumerate() {
        let mut seen = HashSet::new();
        for (j, preset) in micro.presets.env.iter().enumerate() {
            if !seen.insert(preset.name.as_str()) {
                return Err(m.invalid(
                    format!("micros[{i}].presets.env[{j}].name"),
                    format!("the variable `{}` is declared twice", preset.name),
                    "declare each variable once",
                ));
            }
        }
    }
    Ok(())
}

fn validate_actions(m: &Manifest) -> Result<(), ManifestError> {
    let total: usize = m.micros.iter().map(|micro| micro.actions.len()).sum();
    if total > MAX_ACTIONS_PER_APP {
        return Err(m.invalid(
            "micros",
            format!("the app declares {total} actions; at most {MAX_ACTIONS_PER_APP} are allowed"),
            "remove actions",
        ));
    }
    let mut ids: HashMap<&str, String> = HashMap::new();
    for (i, micro) in m.micros.iter().enumerate() {
        if micro.actions.len() > MAX_ACTIONS_PER_MICRO {
            return Err(m.invalid(
                format!("micros[{i}].actions"),
                format!(
                    "`{}` declares {} actions; at most {MAX_ACTIONS_PER_MICRO} are allowed",
                    micro.name,
                    micro.actions.len()
                ),
                "remove actions or merge them into one",
            ));
        }
        for (j, action) in micro.actions.iter().enumerate() {
            let here = format!("micros[{i}].actions[{j}]");
            if let Some(first) = ids.insert(action.id.as_str(), here.clone()) {
                return Err(m.invalid(
                    format!("{here}.id"),
                    format!("the action id `{}` is already used by {first}", action.id),
                    "give every action in the app its own id",
                ));
            }
        }
    }
    Ok(())
}

/// Checks the files the manifest names: `src` folders and their size, and the components.
pub(super) fn files(m: &Manifest) -> Result<(), ManifestError> {
    for (i, micro) in m.micros.iter().enumerate() {
        let src = micro.src_dir(m);
        if !src.is_dir() {
            return Err(m.invalid(
                format!("micros[{i}].src"),
                format!("`{}` is not a folder", src.display()),
                "point `src` at the Micro's folder, relative to the manifest",
            ));
        }
        if micro.is_static() {
            let serve = micro.serve_dir(m);
            if !serve.is_dir() {
                return Err(m.invalid(
                    format!("micros[{i}].serve"),
                    format!("`{}` is not a folder", serve.display()),
                    "build the front end first (`micros build`, or `micros up --build`), or \
                     point `serve` at its output folder, relative to `src`",
                ));
            }
        } else {
            check_component(m, i, &micro.component_path(m))?;
        }
        let total = folder_size(&src).map_err(|e| {
            m.invalid(
                format!("micros[{i}].src"),
                format!("cannot read `{}`: {e}", src.display()),
                "check the folder's permissions",
            )
        })?;
        if total > MAX_SRC_BYTES {
            return Err(m.invalid(
                format!("micros[{i}].src"),
                format!(
                    "the files under `{}` total {total} bytes; at most {MAX_SRC_BYTES} are allowed",
                    src.display()
                ),
                "move large or build-only files out of the Micro's folder",
            ));
        }
    }
    Ok(())
}

fn check_component(m: &Manifest, i: usize, path: &Path) -> Result<(), ManifestError> {
    let field = format!("micros[{i}].component");
    let metadata = std::fs::metadata(path).map_err(|e| {
        m.invalid(
            &field,
            format!("cannot read `{}`: {e}", path.display()),
            "build the Micro first (`micros build`, or `micros up --build`), or fix the path (it is relative to `src`)",
        )
    })?;
    if !metadata.is_file() {
        return Err(m.invalid(
            &field,
            format!("`{}` is not a file", path.display()),
            "point `component` at the built .wasm file",
        ));
    }
    if metadata.len() > MAX_COMPONENT_BYTES {
        return Err(m.invalid(
            &field,
            format!(
                "`{}` is {} bytes; at most {MAX_COMPONENT_BYTES} are allowed",
                path.display(),
                metadata.len()
            ),
            "build in release mode and strip debug information",
        ));
    }
    let mut header = [0u8; 8];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut header));
    let header = &header[..read.unwrap_or(0)];
    if wasmparser::Parser::is_component(header) {
        Ok(())
    } else if wasmparser::Parser::is_core_wasm(header) {
        Err(m.invalid(
            &field,
            format!("`{}` is a core WebAssembly module, not a component", path.display()),
            "build for the `wasm32-wasip2` target (cargo build --target wasm32-wasip2), which makes a component",
        ))
    } else {
        Err(m.invalid(
            &field,
            format!("`{}` is not a WebAssembly component", path.display()),
            "point `component` at the .wasm file the build makes for `wasm32-wasip2`",
        ))
    }
}

/// The total size of the regular files under `dir`; symbolic links are not followed.
fn folder_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
            if total > MAX_SRC_BYTES {
                return Ok(total);
            }
        }
    }
    Ok(total)
}
