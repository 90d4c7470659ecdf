//! The app's state folder: its keys (kept across restarts) and each Micro's `/tmp`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rand::RngExt as _;
use serde::{Deserialize, Serialize};

/// The keys file inside the state folder.
pub const KEYS_FILE: &str = "keys.toml";
/// Characters of a project id (lowercase letters and digits, as Deta's were).
const PROJECT_ID_LEN: usize = 8;
/// Characters of a Micro's secret: 32 of 62 symbols, about 190 bits of randomness.
const SECRET_LEN: usize = 32;

/// The app's identity: one project id, and one secret per Micro.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// The app's project id, shared by its Micros.
    pub project_id: String,
    /// Each Micro's secret, by name.
    pub secrets: BTreeMap<String, String>,
}

impl Keys {
    /// `DETA_PROJECT_KEY` of a Micro: `<project id>_<secret>`.
    pub fn project_key(&self, micro: &str) -> Option<String> {
        self.secrets
            .get(micro)
            .map(|secret| format!("{}_{secret}", self.project_id))
    }
}

/// The state folder of one app.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the state folder at `root`.
    pub fn open(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("failed to create the state folder `{}`", root.display()))?;
        Ok(Self { root })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Loads the keys, adding a secret for each Micro that has none and saving if anything
    /// changed. The file is written whole (to a temporary file, then renamed) with mode 0600.
    pub fn keys(&self, micros: &[&str]) -> anyhow::Result<Keys> {
        let path = self.root.join(KEYS_FILE);
        let mut keys = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Keys>(&text).with_context(|| {
                format!(
                    "`{}` is damaged: restore it from a backup, or delete it to make new keys",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keys {
                project_id: random_string(PROJECT_ID_LEN, b"abcdefghijklmnopqrstuvwxyz0123456789"),
                secrets: BTreeMap::new(),
            },
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read `{}`", path.display()));
            }
        };
        let mut changed = !path.exists();
        for micro in micros {
            if !keys.secrets.contains_key(*micro) {
                keys.secrets.insert(
                    (*micro).to_string(),
                    random_string(SECRET_LEN, ALPHANUMERIC),
                );
                changed = true;
            }
        }
        if changed {
            write_private(
                &path,
                &toml::to_string(&keys).context("failed to encode the keys")?,
            )?;
        }
        Ok(keys)
    }

    /// Returns the `/tmp` folder of a Micro, created if missing and emptied unless `keep`.
    pub fn tmp(&self, micro: &str, keep: bool) -> anyhow::Result<PathBuf> {
        if micro.is_empty() || micro.contains(['/', '\\', '.']) {
            bail!("invalid Micro name `{micro}` for a /tmp folder");
        }
        let dir = self.root.join("tmp").join(micro);
        if !keep {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to empty `{}`", dir.display()));
                }
            }
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        Ok(dir)
    }
}

pub(crate) const ALPHANUMERIC: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` with the operating system's generator.
pub(crate) fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Writes `text` to `path` atomically, readable only by the owner.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to save `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let first = state.keys(&["web"]).unwrap();
        let second = state.keys(&["web", "api"]).unwrap();
        assert_eq!(first.project_id, second.project_id);
        assert_eq!(first.secrets["web"], second.secrets["web"]);
        assert_ne!(second.secrets["web"], second.secrets["api"]);
        assert_eq!(second.secrets["api"].len(), SECRET_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEYS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
