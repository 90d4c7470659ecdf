//! The action plan of an app: each action's schedule after the operator's overrides, resolved
//! once at load. Firing them is the scheduler's (the serving layer's) work.

use anyhow::bail;
use chrono::{DateTime, Utc};

use crate::app::App;
use crate::spec::manifest::{ActionId, Manifest};
use crate::spec::schedule::Schedule;

/// `--action ID=INTERVAL` or `--action ID=off`: the operator's schedule for one action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOverride {
    /// The action's id.
    pub id: ActionId,
    /// Its new schedule; `None` turns it off.
    pub schedule: Option<Schedule>,
}

impl std::str::FromStr for ActionOverride {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let Some((id, interval)) = s.split_once('=') else {
            bail!("`{s}` is not `ID=INTERVAL` or `ID=off`");
        };
        let id = id.parse::<ActionId>().map_err(anyhow::Error::msg)?;
        let schedule = match interval.trim() {
            "off" => None,
            interval => Some(Schedule::parse(interval).map_err(anyhow::Error::msg)?),
        };
        Ok(Self { id, schedule })
    }
}

/// One action of the app as it will run: where, what, and when.
#[derive(Debug, Clone)]
pub struct ActionInfo {
    /// The Micro it belongs to.
    pub micro: String,
    /// The action's id.
    pub id: String,
    /// Its schedule after the operator's overrides; `None` if turned off.
    pub schedule: Option<Schedule>,
}

impl App {
    /// Every action of the app with its effective schedule, in manifest order.
    pub fn actions(&self) -> &[ActionInfo] {
        &self.inner.actions
    }

    /// The last run of action `id` since the app was loaded, or since the release it replaced
    /// was ([`App::carry_last_runs`]).
    pub(crate) fn last_run(&self, id: &str) -> Option<LastRun> {
        self.inner.last_runs.get(id)
    }

    /// Takes on the last runs `earlier` (the release this one replaces) recorded, for the
    /// actions this one has and has not run yet.
    pub(crate) fn carry_last_runs(&self, earlier: &App) {
        for action in &self.inner.actions {
            if self.last_run(&action.id).is_none()
                && let Some(run) = earlier.last_run(&action.id)
            {
                self.inner.last_runs.record(&action.id, run);
            }
        }
    }
}

/// Every action of a manifest with the operator's overrides applied; an override naming no
/// action is an error.
pub fn resolve(
    manifest: &Manifest,
    overrides: &[ActionOverride],
) -> anyhow::Result<Vec<ActionInfo>> {
    let mut actions = Vec::new();
    for micro in &manifest.micros {
        for action in &micro.actions {
            let schedule = match overrides.iter().rev().find(|o| o.id == action.id) {
                Some(choice) => choice.schedule.clone(),
                None => Some(action.default_interval.schedule().clone()),
            };
            actions.push(ActionInfo {
                micro: micro.name.to_string(),
                id: action.id.to_string(),
                schedule,
            });
        }
    }
    for choice in overrides {
        if !actions.iter().any(|a| a.id == choice.id.as_str()) {
            let known: Vec<&str> = actions.iter().map(|a| a.id.as_str()).collect();
            bail!(
                "--action {}: the app has no action `{}` (its actions: {})",
                choice.id,
                choice.id,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    Ok(actions)
}

/// How the last run of an action went, kept in memory while the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastRun {
    /// When it started.
    pub at: DateTime<Utc>,
    /// What the Micro answered, if it did.
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// The last run of each action of an app, by action id.
#[derive(Debug, Default)]
pub(crate) struct LastRuns(std::sync::Mutex<std::collections::HashMap<String, LastRun>>);

impl LastRuns {
    /// Records a run of action `id`.
    pub(crate) fn record(&self, id: &str, run: LastRun) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_string(), run);
    }

    /// The last run of action `id`, if it ran.
    pub(crate) fn get(&self, id: &str) -> Option<LastRun> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

/// The next run of an action after `now`, if it is on.
pub fn next_run(info: &ActionInfo, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    info.schedule.as_ref().and_then(|s| s.first_after(now))
}
