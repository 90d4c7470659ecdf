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

/// The next run of an action after `now`, if it is on.
pub fn next_run(info: &ActionInfo, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    info.schedule.as_ref().and_then(|s| s.first_after(now))
}
