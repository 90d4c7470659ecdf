//! The app's credentials on disk: the owner token and the app keys, kept only as SHA-256 hashes
//! in `<state>/access.toml` (mode 0600), re-read when the file changes so that a rotation or a
//! revocation reaches a running server at its next request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::settings::state::{StateDir, random_string, write_private};

/// The credentials file inside the state folder.
pub const ACCESS_FILE: &str = "access.toml";
/// Characters of an owner token or an app key: 40 of 62 symbols, about 238 bits, so a fast hash
/// is enough to store them (there is nothing to brute-force).
const SECRET_LEN: usize = 40;
/// Longest app key name.
const MAX_KEY_NAME: usize = 64;

/// What the file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    /// SHA-256 of the owner token, hex; absent until one is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_token_sha256: Option<String>,
    /// App keys by name.
    #[serde(default)]
    keys: BTreeMap<String, StoredKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    sha256: String,
    created: String,
}

/// One app key as `micros keys list` shows it: never the key itself, which is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The name it was created with.
    pub name: String,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
}

/// Who a credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The app's owner.
    Owner,
    /// The holder of the app key of this name.
    Key(String),
}

/// The app's credentials, read from its state folder.
#[derive(Debug)]
pub struct Credentials {
    path: PathBuf,
    cache: Mutex<Cache>,
}

/// The file as last read, and how to tell that it changed.
#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    /// `None` when the file could not be read or parsed: everything is refused until it can.
    file: Option<Arc<AccessFile>>,
}

/// Identifies one version of the file: it is always replaced whole (a new inode), and the time
/// and length catch an editor writing in place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl Credentials {
    /// The credentials of the app whose state folder is `state`.
    pub fn open(state: &StateDir) -> Self {
        Self {
            path: state.path().join(ACCESS_FILE),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The file they live in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes an owner token if there is none and returns it (the only time it is seen);
    /// `None` if one exists.
    pub fn ensure_owner_token(&self) -> anyhow::Result<Option<String>> {
        let mut file = self.load()?;
        if file.owner_token_sha256.is_some() {
            return Ok(None);
        }
        let token = random_string(SECRET_LEN, crate::settings::state::ALPHANUMERIC);
        file.owner_token_sha256 = Some(digest(&token));
        self.save(&file)?;
        Ok(Some(token))
    }

    /// Replaces the owner token with a new one and returns it; the old one (and every login
    /// cookie made with it) stops working.
    pub fn rotate_owner_token(&self) -> anyhow::Result<String> {
        let mut file = self.load()?;
        let token = random_string(SECRET_LEN, crate::settings::state::ALPHANUMERIC);
        file.owner_token_sha256 = Some(digest(&token));
        self.save(&file)?;
        Ok(token)
    }

    /// Creates an app key named `name` and returns it (the only time it is seen).
    pub fn create_key(&self, name: &str) -> anyhow::Result<String> {
        check_key_name(name)?;
        let mut file = self.load()?;
        if file.keys.contains_key(name) {
            bail!("an app key named `{name}` exists: revoke it first, or choose another name");
        }
        let key = random_string(SECRET_LEN, crate::settings::state::ALPHANUMERIC);
        file.keys.insert(
            name.to_string(),
            StoredKey {
                sha256: digest(&key),
                created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
        );
        self.save(&file)?;
        Ok(key)
    }

    /// Every app key, by name.
    pub fn keys(&self) -> anyhow::Result<Vec<KeyInfo>> {
        Ok(self
            .load()?
            .keys
            .into_iter()
            .map(|(name, key)| KeyInfo {
                name,
                created: key.created,
            })
            .collect())
    }

    /// Revokes the app key named `name`; `false` if there is none.
    pub fn revoke_key(&self, name: &str) -> anyhow::Result<bool> {
        let mut file = self.load()?;
        if file.keys.remove(name).is_none() {
            return Ok(false);
        }
        self.save(&file)?;
        Ok(true)
    }

    /// Whether an owner token exists.
    pub fn has_owner_token(&self) -> bool {
        self.current()
            .is_some_and(|file| file.owner_token_sha256.is_some())
    }

    /// Whose credential `secret` is, if anyone's: the owner token, or an app key when `keys`.
    /// Every stored hash is compared, in constant time, whatever matches first.
    pub(crate) fn holder(&self, secret: &str, keys: bool) -> Option<Holder> {
        let file = self.current()?;
        let presented = digest(secret);
        let mut found = None;
        if let Some(owner) = &file.owner_token_sha256
            && bool::from(presented.as_bytes().ct_eq(owner.as_bytes()))
        {
            found = Some(Holder::Owner);
        }
        if keys {
            for (name, key) in &file.keys {
                if bool::from(presented.as_bytes().ct_eq(key.sha256.as_bytes())) && found.is_none()
                {
                    found = Some(Holder::Key(name.clone()));
                }
            }
        }
        found
    }

    /// The file as it is now, re-read if it changed; `None` if it is unreadable (logged).
    fn current(&self) -> Option<Arc<AccessFile>> {
        let stamp = stamp(&self.path);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.stamp != stamp || cache.stamp.is_none() {
            cache.file = match self.load() {
                Ok(file) => Some(Arc::new(file)),
                Err(error) => {
                    tracing::error!(
                        error.type = "credentials",
                        "every credential is refused until this is fixed: {error:#}"
                    );
                    None
                }
            };
            cache.stamp = stamp;
        }
        cache.file.clone()
    }

    /// Reads the file; a missing one is empty.
    fn load(&self) -> anyhow::Result<AccessFile> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).with_context(|| {
                format!(
                    "`{}` is damaged: restore it from a backup, or delete it and make a new owner \
                     token (`micros owner-token --rotate`) and new app keys",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccessFile::default()),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", self.path.display())),
        }
    }

    fn save(&self, file: &AccessFile) -> anyhow::Result<()> {
        write_private(
            &self.path,
            &toml::to_string(file).context("failed to encode the credentials")?,
        )
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        inode,
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// SHA-256 of a secret, lowercase hex.
fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An app key's name: 1 to 64 lowercase letters, digits, `-` and `_`.
fn check_key_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!(
            "`{name}` is not a key name: use 1 to {MAX_KEY_NAME} lowercase letters, digits, `-` \
             and `_`, e.g. `ci-deploy`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_are_kept_as_hashes_and_take_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let credentials = Credentials::open(&state);
        assert_eq!(credentials.holder("anything", true), None);
        let token = credentials.ensure_owner_token().unwrap().unwrap();
        assert_eq!(credentials.ensure_owner_token().unwrap(), None);
        assert_eq!(credentials.holder(&token, false), Some(Holder::Owner));
        let key = credentials.create_key("ci").unwrap();
        assert_eq!(
            credentials.holder(&key, true),
            Some(Holder::Key("ci".into()))
        );
        assert_eq!(credentials.holder(&key, false), None);
        let text = std::fs::read_to_string(credentials.path()).unwrap();
        assert!(!text.contains(&token) && !text.contains(&key), "{text}");
        // Another process (the CLI) revokes and rotates: this one sees it at the next check.
        let other = Credentials::open(&state);
        assert!(other.revoke_key("ci").unwrap());
        assert!(!other.revoke_key("ci").unwrap());
        let new_token = other.rotate_owner_token().unwrap();
        assert_eq!(credentials.holder(&key, true), None);
        assert_eq!(credentials.holder(&token, true), None);
        assert_eq!(credentials.holder(&new_token, true), Some(Holder::Owner));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(credentials.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn names_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let credentials = Credentials::open(&state);
        for bad in ["", "CI", "a b", "a/b", &"x".repeat(65)] {
            assert!(credentials.create_key(bad).is_err(), "{bad}");
        }
        credentials.create_key("ok").unwrap();
        let error = credentials.create_key("ok").unwrap_err().to_string();
        assert!(error.contains("exists"), "{error}");
        std::fs::write(credentials.path(), "owner = [").unwrap();
        assert_eq!(credentials.holder("x", true), None);
        let error = format!("{:#}", credentials.keys().unwrap_err());
        assert!(error.contains("is damaged"), "{error}");
    }
}
