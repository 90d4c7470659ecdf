//! The one-shot commands: `micros trigger`, `micros actions` and `micros import`.

use std::path::PathBuf;

use micros::{ActionOverride, App, Config, Manifest};

use super::Trigger;

/// `micros trigger`: one run of one action, reported on stdout; a failure is an error.
pub(crate) async fn run_trigger(trigger: Trigger) -> anyhow::Result<()> {
    let (path, id) = match trigger.args.as_slice() {
        [id] => (PathBuf::from("."), id.clone()),
        [path, id] => (PathBuf::from(path), id.clone()),
        _ => anyhow::bail!("usage: micros trigger [PATH] ACTION_ID"),
    };
    let manifest = Manifest::load(&path)?;
    let config = Config {
        limits: trigger.limits.into(),
        compile: trigger.compile.into(),
        outbound: trigger.outbound.into(),
        state_dir: trigger.state_dir,
        env: trigger.env,
        // A one-off run must not empty the /tmp of an instance serving the same app.
        keep_tmp: true,
        ..Config::default()
    };
    let app = tokio::task::spawn_blocking(move || App::load(manifest, &config)).await??;
    let report = app.trigger(&id).await?;
    let status = report
        .status
        .map_or_else(|| "none".to_string(), |s| s.to_string());
    println!("status: {status}");
    println!("duration: {} ms", report.duration.as_millis());
    println!("body:");
    println!("{}", String::from_utf8_lossy(&report.body));
    match report.failure {
        None => Ok(()),
        Some(reason) => anyhow::bail!("action `{id}` failed: {reason}"),
    }
}

/// `micros actions`: every action, its schedule and its next run.
pub(crate) fn list_actions(
    path: &std::path::Path,
    overrides: Vec<ActionOverride>,
) -> anyhow::Result<()> {
    let manifest = Manifest::load(path)?;
    let actions = micros::actions::resolve(&manifest, &overrides)?;
    let now = chrono::Utc::now();
    let mut rows = vec![[
        "MICRO".to_string(),
        "ACTION".into(),
        "SCHEDULE".into(),
        "NEXT RUN (UTC)".into(),
    ]];
    for action in &actions {
        let schedule = action
            .schedule
            .as_ref()
            .map_or_else(|| "off".to_string(), ToString::to_string);
        let next = micros::actions::next_run(action, now).map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        );
        rows.push([action.micro.clone(), action.id.clone(), schedule, next]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        println!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

/// `micros import`: the Space app's `Spacefile` written as a `Spacefile.toml`, with what was
/// assumed, dropped or left to do by hand.
pub(crate) fn import(path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use micros::import::NoteKind;
    let imported = micros::import::import(path)?;
    micros::import::write(path, &imported, force)?;
    for note in &imported.notes {
        println!("{note}");
    }
    let by_hand = imported
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::ByHand)
        .count();
    let manifest = path.join(micros::manifest::MANIFEST_FILE);
    if by_hand == 0 {
        eprintln!(
            "wrote `{}`; build and serve the app with:\n\n    micros up {} --build",
            manifest.display(),
            path.display()
        );
    } else {
        eprintln!(
            "wrote `{}`; {by_hand} thing{} above to do by hand before it builds and serves as on Space",
            manifest.display(),
            if by_hand == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
