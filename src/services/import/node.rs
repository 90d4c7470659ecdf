//! A Space Node Micro (`nodejs14`, `nodejs16`, `nodejs18`) as a JavaScript Micro here: the app's
//! module (from `run`, `package.json`'s `main`, or `index.js`) must export a fetch-style app (a
//! Hono app, or `{ fetch }`); an entry module hands it the requests, and esbuild bundles it with
//! its npm packages (Deta's SDK among them, over the engine's `fetch`) for componentize-js.

use std::path::Path;

use serde_json::Value;

/// The componentize-js the build installs: the JavaScript starter's.
const COMPONENTIZE_JS: &str = "0.23.0";
/// The esbuild the build installs, to bundle the app and its packages into one module.
const ESBUILD: &str = "0.28.2";
/// The folder (in the app folder) of the entry modules and the shims bundled with them.
pub(super) const SUPPORT_DIR: &str = "micros_js";
/// The component each JavaScript Micro builds, in its `src`.
pub(super) const COMPONENT: &str = "app.wasm";

/// The app's module, relative to `src`: the script `run` starts, else `package.json`'s `main`,
/// else `index.js` (Space's default).
pub(super) fn main_module(src: &Path, run: Option<&str>) -> String {
    let from_run = run.and_then(|run| {
        run.split_whitespace()
            .find(|word| {
                [".js", ".mjs", ".cjs"]
                    .iter()
                    .any(|ext| word.ends_with(ext))
            })
            .map(|word| word.trim_start_matches("./").to_string())
    });
    from_run
        .or_else(|| {
            let text = std::fs::read_to_string(src.join("package.json")).ok()?;
            let package: Value = serde_json::from_str(&text).ok()?;
            package["main"]
                .as_str()
                .map(|main| main.trim_start_matches("./").to_string())
        })
        .unwrap_or_else(|| "index.js".to_string())
}

/// The entry module of the Micro `micro` (under `SUPPORT_DIR`), whose app module is `module`
/// under `src`.
pub(super) fn entry(micro: &str, src: &str, module: &str) -> (String, String) {
    let path = if src == "." {
        format!("../{module}")
    } else {
        format!("../{src}/{module}")
    };
    let text = format!(
        "// Written by `micros import`: the Micro `{micro}` serves the fetch-style app that \
         `{module}` exports\n\
         // (`export default app` of Hono, `export default {{ fetch }}`, or the same as \
         `module.exports`).\n\
         import {{ startServing }} from \"./prelude.js\";\n\
         import app from {path:?};\n\n\
         const handle = typeof app === \"function\" ? app : (request) => app.fetch(request);\n\
         addEventListener(\"fetch\", (event) => {{\n  startServing();\n  \
         event.respondWith(handle(event.request));\n}});\n"
    );
    (entry_file(micro), text)
}

fn entry_file(micro: &str) -> String {
    format!("entry_{micro}.js")
}

/// The build commands of the Micro `micro` whose `src` is `up` below the app folder: the pinned
/// componentize-js and esbuild (once each, apart: one prunes the other's packages), the app's
/// packages (with a `package.json`), the WIT at the version componentize-js speaks, the bundle,
/// and the component unless the bundle is the one it was built from.
pub(super) fn commands(micro: &str, up: &str, packages: bool) -> Vec<String> {
    let tools = format!("{up}.tools");
    let bundle = format!("{tools}/bundle-{micro}.js");
    let built = format!("{tools}/bundle-{micro}.built.js");
    let mut commands = vec![
        format!(
            "test -x {tools}/js/node_modules/.bin/componentize-js || npm install --prefix {tools}/js \
             --save-exact --no-audit --no-fund --loglevel=error @bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
        ),
        format!(
            "test -x {tools}/esbuild/node_modules/.bin/esbuild || npm install --prefix {tools}/esbuild \
             --save-exact --no-audit --no-fund --loglevel=error esbuild@{ESBUILD}"
        ),
    ];
    if packages {
        commands.push("npm install --no-audit --no-fund --prefer-offline --loglevel=error".into());
    }
    commands.push(format!(
        "rm -rf {tools}/wit && mkdir -p {tools}/wit && cp -R {up}wit/deps {tools}/wit/deps && \
         cp {up}world.wit {tools}/wit/ && for f in {tools}/wit/deps/*/*.wit; do \
         sed -E 's/0[.]2[.](1[1-9]|[2-9][0-9])/0.2.10/g' \"$f\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; done"
    ));
    commands.push(format!(
        "{tools}/esbuild/node_modules/.bin/esbuild {up}{SUPPORT_DIR}/{} --bundle --format=esm \
         --platform=node --alias:node-fetch={up}{SUPPORT_DIR}/node-fetch.js '--external:wasi:*' \
         --external:detalib --log-level=warning --outfile={bundle}",
        entry_file(micro)
    ));
    commands.push(format!(
        "if [ -f {COMPONENT} ] && cmp -s {bundle} {built}; then echo '{COMPONENT} is up to date'; \
         else {tools}/js/node_modules/.bin/componentize-js --wit {tools}/wit --world-name \
         micros:js-app/app -o {COMPONENT} {bundle} && cp {bundle} {built}; fi"
    ));
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_module_from_run_package_json_or_index_js() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(main_module(dir.path(), None), "index.js");
        assert_eq!(
            main_module(dir.path(), Some("node ./server.mjs")),
            "server.mjs"
        );
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"main": "./src/app.js"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(main_module(dir.path(), None), "src/app.js");
        assert_eq!(main_module(dir.path(), Some("npm start")), "src/app.js");
    }

    #[test]
    fn the_entry_imports_the_app_from_the_support_folder() {
        let (file, text) = entry("api", "backend", "index.js");
        assert_eq!(file, "entry_api.js");
        assert!(
            text.contains("import app from \"../backend/index.js\";\n"),
            "{text}"
        );
        let (_, text) = entry("web", ".", "app.js");
        assert!(text.contains("import app from \"../app.js\";\n"), "{text}");
    }
}
