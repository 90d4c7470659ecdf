//! The fields of a Space Micro beside its engine: public routes, presets, actions, and those
//! dropped, each into the manifest or a note.

use serde_json::Value;

use super::{Kind, Notes, Toml};
use crate::services::import::NoteKind;
use crate::services::import::space::{SpaceMicro, brief};
use crate::spec::manifest::{ActionId, EnvName, Interval, RoutePattern};

/// `public` and `public_routes`: a regular expression is listed, never carried over.
pub(super) fn routes(micro: &SpaceMicro, toml: &mut Toml, notes: &mut Notes<'_>) {
    let routes = micro.public_routes.clone().unwrap_or_default();
    match micro.public {
        Some(true) => {
            toml.line("public = true");
            if !routes.is_empty() {
                notes.add(
                    NoteKind::Dropped,
                    "public_routes",
                    "the Micro is public, every route of it: the list adds nothing".into(),
                );
            }
        }
        _ => {
            let mut kept = Vec::new();
            for route in routes {
                let written = if route.starts_with('/') {
                    route.clone()
                } else {
                    format!("/{route}")
                };
                if is_regex(&written) || written.parse::<RoutePattern>().is_err() {
                    notes.add(
                        NoteKind::ByHand,
                        "public_routes",
                        format!(
                            "`{route}` is not a route pattern (`/path`, `*` for any run of \
                             characters): not carried over, so those routes stay private; write \
                             the routes it meant as patterns"
                        ),
                    );
                    continue;
                }
                kept.push(written);
            }
            if !kept.is_empty() {
                toml.strings("public_routes", &kept);
            }
        }
    }
}

/// The fields with no counterpart here, each said.
pub(super) fn dropped(micro: &SpaceMicro, kind: &Kind, notes: &mut Notes<'_>) {
    if let Some(run) = &micro.run
        && !matches!(kind, Kind::Python | Kind::Node)
    {
        notes.add(
            NoteKind::Dropped,
            "run",
            format!("`{run}`: a Micro is a component called for each request, not a process"),
        );
    }
    if let Some(dev) = &micro.dev {
        notes.add(
            NoteKind::Dropped,
            "dev",
            format!("`{dev}`: `micros up --watch` rebuilds and serves the app as you edit"),
        );
    }
    if let Some(include) = &micro.include {
        notes.add(
            NoteKind::Dropped,
            "include",
            format!(
                "`{}`: every file under `src` is bundled; leave out what the Micro does not need \
                 in `.spaceignore`",
                include.join("`, `")
            ),
        );
    }
    if micro.serve.is_some() && !matches!(kind, Kind::Static { .. }) {
        notes.add(
            NoteKind::Dropped,
            "serve",
            "only a static Micro serves a folder".into(),
        );
    }
    if micro.provide_actions.is_some() {
        notes.add(
            NoteKind::Dropped,
            "provide_actions",
            "micros has no actions one app offers another".into(),
        );
    }
    if let Some(runtime) = &micro.runtime {
        notes.add(
            NoteKind::Dropped,
            "runtime",
            format!("`{runtime}`: the engine decides how the Micro runs"),
        );
    }
    for (key, value) in &micro.other {
        notes.add(
            NoteKind::Dropped,
            key,
            format!(
                "`{}`: not a field of Space's Spacefile, nor of micros'",
                brief(value)
            ),
        );
    }
}

/// `presets`: app keys, and each variable a Micro that runs code may read.
pub(super) fn presets(micro: &SpaceMicro, runs_code: bool, toml: &mut Toml, notes: &mut Notes<'_>) {
    if let Some(presets) = &micro.presets {
        for key in presets.other.keys() {
            notes.add(
                NoteKind::Dropped,
                &format!("presets.{key}"),
                "not a preset micros knows".into(),
            );
        }
        if presets.api_keys == Some(true) {
            toml.line("");
            toml.line("[micros.presets]");
            toml.line("api_keys = true");
        }
        for (i, env) in presets.env.iter().flatten().enumerate() {
            let field = format!("presets.env[{i}]");
            let Some(var) = &env.name else {
                notes.add(NoteKind::Dropped, &field, "has no `name`".into());
                continue;
            };
            if !runs_code {
                notes.add(
                    NoteKind::Dropped,
                    &field,
                    format!("`{var}`: a static Micro runs no code to read it"),
                );
                continue;
            }
            if let Err(error) = var.parse::<EnvName>() {
                notes.add(
                    NoteKind::ByHand,
                    &field,
                    format!("not carried over: {error}"),
                );
                continue;
            }
            toml.line("");
            toml.line("[[micros.presets.env]]");
            toml.string("name", var);
            if let Some(description) = &env.description {
                toml.string("description", description);
            }
            match &env.default {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => toml.string("default", text),
                Some(other) => toml.string("default", &other.to_string()),
            }
            for key in env.other.keys() {
                notes.add(
                    NoteKind::Dropped,
                    &format!("{field}.{key}"),
                    "not a field of a preset".into(),
                );
            }
        }
    }
}

/// `actions`: each one this can run; a cron day field `?` written `*`.
pub(super) fn actions(micro: &SpaceMicro, runs_code: bool, toml: &mut Toml, notes: &mut Notes<'_>) {
    for (i, action) in micro.actions.iter().flatten().enumerate() {
        let field = format!("actions[{i}]");
        if !runs_code {
            notes.add(
                NoteKind::Dropped,
                &field,
                "a static Micro runs no code to act".into(),
            );
            continue;
        }
        let id = action.id.clone().unwrap_or_default();
        if let Err(error) = id.parse::<ActionId>() {
            notes.add(
                NoteKind::ByHand,
                &field,
                format!("not carried over: {error}"),
            );
            continue;
        }
        let mut interval = action.default_interval.clone().unwrap_or_default();
        let fields: Vec<&str> = interval.split_whitespace().collect();
        if fields.len() == 5 && (fields[2] == "?" || fields[4] == "?") {
            let written = fields
                .iter()
                .map(|f| if *f == "?" { "*" } else { f })
                .collect::<Vec<_>>()
                .join(" ");
            notes.add(
                NoteKind::Assumed,
                &format!("{field}.default_interval"),
                format!("`{interval}` written `{written}`: `?` (any day, in Space's cron) is `*`"),
            );
            interval = written;
        }
        if let Err(error) = Interval::try_from(interval.clone()) {
            notes.add(
                NoteKind::ByHand,
                &format!("{field}.default_interval"),
                format!("not carried over: {error}"),
            );
            continue;
        }
        if action.trigger.as_deref().is_some_and(|t| t != "schedule") {
            notes.add(
                NoteKind::ByHand,
                &format!("{field}.trigger"),
                "not carried over: `schedule` is the only trigger".into(),
            );
            continue;
        }
        toml.line("");
        toml.line("[[micros.actions]]");
        toml.string("id", &id);
        toml.string("name", action.name.as_deref().unwrap_or(&id));
        if let Some(description) = &action.description {
            toml.string("description", description);
        }
        toml.string("trigger", "schedule");
        toml.string("default_interval", &interval);
        if let Some(path) = &action.path {
            notes.add(
                NoteKind::Dropped,
                &format!("{field}.path"),
                format!("`{path}`: actions are delivered to `/__space/v0/actions`, as Space did"),
            );
        }
        for key in action.other.keys() {
            notes.add(
                NoteKind::Dropped,
                &format!("{field}.{key}"),
                "not a field of an action".into(),
            );
        }
    }
}

/// Whether a public route is written as a regular expression rather than a pattern.
fn is_regex(route: &str) -> bool {
    route.contains(['(', ')', '[', ']', '^', '$', '+', '\\', '|', '{', '}']) || route.contains(".*")
}
