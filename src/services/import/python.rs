//! A Space Python Micro (`python3.8`, `python3.9`) as a Python Micro here: its `run` (or its
//! module) read for the app object and its interface (ASGI or WSGI), an entry module that hands
//! the app to the toolkit's adapter, and the build commands that make a component of it with
//! componentize-py and the app's pure-Python requirements.

use std::path::Path;

use super::{Note, NoteKind};

/// The componentize-py the build installs: the Python starter's.
pub(super) const COMPONENTIZE_PY: &str = "0.25.1";
/// The Python componentize-py embeds: wheels are chosen for it.
const PYTHON_VERSION: &str = "3.14";
/// The folder (in the app folder) of the toolkit and the entry modules.
pub(super) const SUPPORT_DIR: &str = "micros_python";
/// The component each Python Micro builds, in its `src`.
pub(super) const COMPONENT: &str = "micro.wasm";

/// How a Python app is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Interface {
    /// `async def app(scope, receive, send)`: FastAPI, Starlette, Quart.
    Asgi,
    /// `def app(environ, start_response)`: Flask, Bottle, Django's WSGI handler.
    Wsgi,
}

/// The app object a Python Micro serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Its module, dotted (`main`, `app.server`).
    pub module: String,
    /// Its name in the module (`app`).
    pub attr: String,
    /// How it is called.
    pub interface: Interface,
}

/// Reads `run` (or, without one, the module's source) for the app a Micro serves. `None`, with
/// a note, if it names no app this can call.
pub(super) fn target(
    src: &Path,
    run: Option<&str>,
    field: &str,
    notes: &mut Vec<Note>,
) -> Option<Target> {
    let mut note = |kind, text: String| {
        notes.push(Note {
            kind,
            field: field.to_string(),
            text,
        });
    };
    let words: Vec<&str> = run
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default();
    let program = words
        .first()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or("");
    let spec = words
        .iter()
        .skip(1)
        .find(|w| !w.starts_with('-') && w.contains(':'));
    let (module, attr) = match (run, spec) {
        (None, _) => {
            note(
                NoteKind::Assumed,
                "no `run`: Space served the `app` of `main.py`, and so does this Micro".into(),
            );
            ("main".to_string(), "app".to_string())
        }
        (Some(_), Some(spec)) => {
            let (module, attr) = spec.split_once(':').unwrap_or((spec, "app"));
            (module.to_string(), attr.to_string())
        }
        (Some(run), None) => match words.as_slice() {
            [python, script, ..] if python.starts_with("python") && script.ends_with(".py") => {
                note(
                    NoteKind::Assumed,
                    format!(
                        "`{run}` starts a server of its own, which cannot run here: this Micro \
                         serves the `app` object of `{script}` instead (define one there if it \
                         has another name)"
                    ),
                );
                (
                    script.trim_end_matches(".py").replace('/', "."),
                    "app".to_string(),
                )
            }
            _ => {
                note(
                    NoteKind::ByHand,
                    format!(
                        "`{run}` names no `module:app`: write the ASGI or WSGI app's module and \
                         name into `{SUPPORT_DIR}/`'s entry module by hand"
                    ),
                );
                return None;
            }
        },
    };
    let identifier = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !module.split('.').all(identifier) || !identifier(&attr) {
        note(
            NoteKind::ByHand,
            format!("`{module}:{attr}` is not a Python module and name this can import"),
        );
        return None;
    }
    let interface = match program {
        "uvicorn" | "hypercorn" | "daphne" | "granian" => Interface::Asgi,
        "gunicorn"
            if words
                .iter()
                .any(|w| w.contains("UvicornWorker") || w.contains("uvicorn.workers")) =>
        {
            Interface::Asgi
        }
        "gunicorn" | "waitress-serve" | "flask" => Interface::Wsgi,
        _ => {
            let file = src.join(format!("{}.py", module.replace('.', "/")));
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            let asgi = ["FastAPI(", "Starlette(", "Quart(", "Litestar("]
                .iter()
                .any(|mark| source.contains(mark));
            let wsgi = ["Flask(", "Bottle(", "get_wsgi_application("]
                .iter()
                .any(|mark| source.contains(mark));
            match (asgi, wsgi) {
                (false, true) => Interface::Wsgi,
                (true, _) => Interface::Asgi,
                (false, false) => {
                    note(
                        NoteKind::Assumed,
                        format!(
                            "`{module}:{attr}` is taken for an ASGI app (no FastAPI, Starlette, \
                             Flask or Bottle seen in `{}`): if it is WSGI, change `asgi` to `wsgi` \
                             in its entry module",
                            file.display()
                        ),
                    );
                    Interface::Asgi
                }
            }
        }
    };
    Some(Target {
        module,
        attr,
        interface,
    })
}

/// The version specifier of `package` in a `requirements.txt` (`""` when it is not pinned), if
/// the file lists it. Names compare as pip compares them (case, `_`, `.` and `-` alike).
pub(super) fn requirement<'a>(text: &'a str, package: &str) -> Option<&'a str> {
    let normal = |name: &str| name.to_ascii_lowercase().replace(['_', '.'], "-");
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('-') {
            return None;
        }
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .unwrap_or(line.len());
        if normal(&line[..end]) != normal(package) {
            return None;
        }
        let rest = line[end..].trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(extras) => extras.split_once(']').map_or("", |(_, after)| after),
            None => rest,
        };
        Some(rest.split(';').next().unwrap_or_default().trim())
    })
}

/// What to pin for FastAPI to build, if the requirements let pip pick one that will not: later
/// FastAPI needs pydantic 2 on Python 3.14, whose native core has no WebAssembly build.
pub(super) fn fastapi_pins(text: &str) -> Option<String> {
    let fits = |spec: &str| {
        spec.strip_prefix("==")
            .and_then(|version| version.trim().strip_prefix("0."))
            .and_then(|rest| rest.split('.').next())
            .and_then(|minor| minor.parse::<u32>().ok())
            .is_some_and(|minor| minor <= 115)
    };
    let mut problems = Vec::new();
    if let Some(spec) = requirement(text, "fastapi")
        && !fits(spec)
    {
        problems.push(if spec.is_empty() {
            "`fastapi` is not pinned".to_string()
        } else {
            format!("`fastapi{spec}` allows a FastAPI later than 0.115")
        });
    }
    if let Some(spec) = requirement(text, "pydantic")
        && !(spec.starts_with("==1.") || spec.contains("<2"))
        && !spec.is_empty()
    {
        problems.push(format!("`pydantic{spec}` allows pydantic 2"));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}: on a Micro's Python (3.14), FastAPI after 0.115 needs pydantic 2, whose native \
             core cannot run in a Micro, and the build would fail importing it; pin \
             `fastapi==0.115.12` and `pydantic==1.10.27` in requirements.txt",
            problems.join(", ")
        )
    })
}

/// The entry module of the Micro `micro`: the toolkit's adapter around its app.
pub(super) fn entry(micro: &str, target: &Target) -> (String, String) {
    let module = entry_module(micro);
    let adapter = match target.interface {
        Interface::Asgi => "asgi",
        Interface::Wsgi => "wsgi",
    };
    // An ASGI app's libraries (anyio) import `ssl`, which this Python lacks: the stand-in
    // goes in before the app is imported.
    let prepare = match target.interface {
        Interface::Asgi => "micro.stand_in_ssl()\n",
        Interface::Wsgi => "",
    };
    let text = format!(
        "\"\"\"Written by `micros import`: the Micro `{micro}` serves `{}:{}` ({}).\"\"\"\n\n\
         import micro\n\
         {prepare}\
         from {} import {} as _app\n\n\
         IncomingHandler = micro.{adapter}(_app)\n",
        target.module,
        target.attr,
        adapter.to_uppercase(),
        target.module,
        target.attr,
    );
    (module, text)
}

/// The name of the entry module of the Micro `micro`.
fn entry_module(micro: &str) -> String {
    format!("entry_{}", micro.replace('-', "_"))
}

/// The build commands of the Micro `micro` whose `src` is `up` (`../` per level) below the app
/// folder: componentize-py (pinned, once), the requirements (pure-Python wheels only, for the
/// Python componentize-py embeds; `deta` left out: see the note), then the component, unless it
/// is newer than every source.
pub(super) fn commands(micro: &str, up: &str, requirements: bool) -> Vec<String> {
    let tools = format!("{up}.tools");
    let python = format!("{tools}/python/bin");
    let site = format!("{tools}/site-{micro}");
    let mut commands = vec![format!(
        "{python}/componentize-py --version 2>/dev/null | grep -qx 'componentize-py {COMPONENTIZE_PY}' || \
         {{ python3 -m venv {tools}/python && {python}/pip install --quiet --disable-pip-version-check \
         componentize-py=={COMPONENTIZE_PY}; }}"
    )];
    let mut paths = format!("-p . -p {up}{SUPPORT_DIR}");
    let mut inputs = format!(". {up}{SUPPORT_DIR} {up}wit");
    if requirements {
        // Pure-Python wheels for the Python componentize-py embeds, first; if a requirement has
        // none, what pip finds for this machine, as the Flask example installs: a package
        // whose native code has a pure-Python fallback (MarkupSafe) still works, one without
        // fails to import when the component is built, naming itself. Either way the packages
        // with native code are named.
        commands.push(format!(
            "cmp -s requirements.txt {site}/.requirements.txt || {{ rm -rf {site} && mkdir -p {site} && \
             grep -v -i -E '^[[:space:]]*deta[[:space:]]*([=<>~!;[]|$)' requirements.txt > {site}.txt; \
             if ! {python}/pip install --quiet --disable-pip-version-check --target {site} \
             --only-binary=:all: --platform any --implementation py --abi none \
             --python-version {PYTHON_VERSION} -r {site}.txt 2> {site}.log; then \
             echo \"micros: not every requirement has a pure-Python wheel for Python {PYTHON_VERSION} \
             (pip said: $(grep -m 1 '^ERROR' {site}.log)); installing them as pip finds them for this machine\" >&2; \
             rm -rf {site} && mkdir -p {site} && {python}/pip install --quiet --disable-pip-version-check \
             --target {site} -r {site}.txt || exit 1; fi; \
             native=$(find {site} -name '*.so' | sed 's|^{site}/||; s|/.*||' | sort -u | tr '\\n' ' '); \
             [ -z \"$native\" ] || echo \"micros: native code, which cannot run in a Micro, in: $native(each works only if it falls back to Python)\" >&2; \
             cp requirements.txt {site}/.requirements.txt; }}"
        ));
        paths.push_str(&format!(" -p {site}"));
        inputs.push_str(&format!(" {site}/.requirements.txt"));
    }
    let entry = entry_module(micro);
    commands.push(format!(
        "if [ -f {COMPONENT} ] && [ -z \"$(find {inputs} -type f -newer {COMPONENT} -not -path '*/__pycache__/*' | head -n 1)\" ]; \
         then echo '{COMPONENT} is up to date'; \
         else {python}/componentize-py -q -d {up}wit -w micros:micro/micro componentize {entry} {paths} -o {COMPONENT}; \
         status=$?; find . {up}{SUPPORT_DIR} -name __pycache__ -type d -prune -exec rm -rf {{}} +; exit $status; fi"
    ));
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(run: Option<&str>, source: &str) -> (Option<Target>, Vec<Note>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("main.py"), source).unwrap_or_else(|e| panic!("{e}"));
        let mut notes = Vec::new();
        let target = target(dir.path(), run, "micros[0].run", &mut notes);
        (target, notes)
    }

    fn t(module: &str, attr: &str, interface: Interface) -> Option<Target> {
        Some(Target {
            module: module.into(),
            attr: attr.into(),
            interface,
        })
    }

    #[test]
    fn the_app_and_its_interface_from_run_or_the_source() {
        assert_eq!(
            of(Some("uvicorn main:app"), "").0,
            t("main", "app", Interface::Asgi)
        );
        assert_eq!(
            of(
                Some("gunicorn -w 2 server.web:application --bind 0.0.0.0:$PORT"),
                ""
            )
            .0,
            t("server.web", "application", Interface::Wsgi)
        );
        assert_eq!(
            of(
                Some("gunicorn -k uvicorn.workers.UvicornWorker main:api"),
                ""
            )
            .0,
            t("main", "api", Interface::Asgi)
        );
        let (flask, notes) = of(None, "from flask import Flask\napp = Flask(__name__)\n");
        assert_eq!(flask, t("main", "app", Interface::Wsgi));
        assert_eq!(notes[0].kind, NoteKind::Assumed);
        assert_eq!(
            of(None, "app = FastAPI()\n").0,
            t("main", "app", Interface::Asgi)
        );
        let (script, notes) = of(Some("python main.py"), "app = Flask(__name__)");
        assert_eq!(script, t("main", "app", Interface::Wsgi));
        assert!(notes[0].text.contains("starts a server of its own"));
        let (none, notes) = of(Some("./start.sh"), "");
        assert_eq!(none, None);
        assert_eq!(notes[0].kind, NoteKind::ByHand);
        assert_eq!(of(Some("uvicorn main:app()"), "").0, None);
    }

    #[test]
    fn requirements_are_read_as_pip_reads_them() {
        let text =
            "Flask>=2  # web\n-r other.txt\nfast_api[all]==0.1\npydantic ; python_version>'3'\n";
        assert_eq!(requirement(text, "flask"), Some(">=2"));
        assert_eq!(requirement(text, "fast-api"), Some("==0.1"));
        assert_eq!(requirement(text, "pydantic"), Some(""));
        assert_eq!(requirement(text, "requests"), None);
    }

    #[test]
    fn fastapi_is_pinned_where_it_builds() {
        assert_eq!(fastapi_pins("fastapi==0.115.12\npydantic==1.10.27"), None);
        assert_eq!(fastapi_pins("fastapi==0.99.1\npydantic<2"), None);
        assert_eq!(fastapi_pins("flask\n"), None);
        let unpinned = fastapi_pins("fastapi\nuvicorn").unwrap_or_default();
        assert!(
            unpinned.starts_with("`fastapi` is not pinned: "),
            "{unpinned}"
        );
        let later = fastapi_pins("fastapi>=0.100\npydantic>=2").unwrap_or_default();
        assert!(
            later.starts_with("`fastapi>=0.100` allows a FastAPI later than 0.115, `pydantic>=2` allows pydantic 2: "),
            "{later}"
        );
    }

    #[test]
    fn the_entry_hands_the_app_to_its_adapter() {
        let (module, text) = entry(
            "back-end",
            &Target {
                module: "api.main".into(),
                attr: "app".into(),
                interface: Interface::Asgi,
            },
        );
        assert_eq!(module, "entry_back_end");
        assert!(
            text.contains("from api.main import app as _app\n"),
            "{text}"
        );
        assert!(
            text.ends_with("IncomingHandler = micro.asgi(_app)\n"),
            "{text}"
        );
    }
}
