//! Runs each Micro's build `commands` in its `src` folder.

use anyhow::{Context as _, bail};

use crate::spec::manifest::{Manifest, Micro};

/// Runs every Micro's `commands`, in order, each with `sh -c` in the Micro's `src` folder; stops
/// at the first that fails.
pub async fn build(manifest: &Manifest) -> anyhow::Result<()> {
    for (i, micro) in manifest.micros.iter().enumerate() {
        build_micro(manifest, i, micro).await?;
    }
    Ok(())
}

/// Runs one Micro's `commands` (it is `micros[index]`), stopping at the first that fails.
pub(crate) async fn build_micro(
    manifest: &Manifest,
    index: usize,
    micro: &Micro,
) -> anyhow::Result<()> {
    let src = micro.src_dir(manifest);
    if !src.is_dir() {
        bail!(
            "{}: `micros[{index}].src`: `{}` is not a folder\n  help: point `src` at the Micro's folder, relative to the manifest",
            manifest.file.display(),
            src.display()
        );
    }
    for command in &micro.commands {
        tracing::info!(micro = %micro.name, "running `{command}`");
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&src)
            .status()
            .await
            .with_context(|| format!("micro `{}`: failed to start `{command}`", micro.name))?;
        if !status.success() {
            bail!(
                "micro `{}`: build command `{command}` failed ({status}) in `{}`",
                micro.name,
                src.display()
            );
        }
    }
    Ok(())
}
