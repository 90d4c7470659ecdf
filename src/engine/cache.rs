//! The compile cache: compiled components in the state folder, keyed by the component's hash
//! and wasmtime's compatibility hash, each sealed with a key only this state folder holds, so
//! that the runtime never loads native code it did not write itself.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::state::StateDir;

/// The cache's folder inside the state folder.
pub(crate) const CACHE_DIR: &str = "cache";
/// The file holding the sealing key, inside the cache folder.
const KEY_FILE: &str = "key";
/// Characters of the sealing key: 64 of 62 symbols, about 380 bits.
const KEY_LEN: usize = 64;
/// Bytes of the seal at the start of each cached file.
const SEAL_LEN: usize = 32;

/// Compiled components of one app.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
    key: Vec<u8>,
}

impl CompileCache {
    /// The cache in `state`, made (with a new key) if missing.
    pub(crate) fn open(state: &StateDir) -> anyhow::Result<Self> {
        let dir = state.path().join(CACHE_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create the compile cache `{}`", dir.display()))?;
        let key_path = dir.join(KEY_FILE);
        let key = match std::fs::read(&key_path) {
            Ok(key) if key.len() == KEY_LEN => key,
            Ok(_) | Err(_) => {
                // A new key: every artifact sealed with the old one is compiled again.
                let key = crate::state::random_string(KEY_LEN, crate::state::ALPHANUMERIC);
                crate::state::write_private(&key_path, &key)?;
                key.into_bytes()
            }
        };
        Ok(Self { dir, key })
    }

    /// The file a component compiled by `engine` from `bytes` is cached in.
    fn path(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> PathBuf {
        let component = hex(&Sha256::digest(bytes));
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{component}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached compilation of `bytes`, if there is one with a valid seal; a damaged or
    /// foreign file is ignored (and replaced when the component is compiled again).
    pub(crate) fn load(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path(engine, bytes);
        let file = std::fs::read(&path).ok()?;
        if file.len() < SEAL_LEN {
            return None;
        }
        let (seal, artifact) = file.split_at(SEAL_LEN);
        if self.mac(&path, artifact).verify_slice(seal).is_err() {
            tracing::warn!(
                path = %path.display(),
                "a compiled component in the cache has no valid seal: ignored, compiling again"
            );
            return None;
        }
        match deserialize(engine, artifact) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), "a cached component did not load: {error:#}");
                None
            }
        }
    }

    /// Stores the compilation of `bytes`, sealed; atomically, so a reader never sees half.
    pub(crate) fn store(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        component: &Component,
    ) -> anyhow::Result<()> {
        let path = self.path(engine, bytes);
        let artifact = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("failed to serialize a compiled component")?;
        let seal = self.mac(&path, &artifact).finalize().into_bytes();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = Vec::with_capacity(SEAL_LEN + artifact.len());
        file.extend_from_slice(&seal);
        file.extend_from_slice(&artifact);
        std::fs::write(&tmp, &file)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("failed to write `{}`", path.display()))
    }

    /// Removes every compiled component but those of the component files `current`; says how
    /// many went. `--watch` compiles every rebuild, and a toolchain whose output differs from
    /// build to build (componentize-js) would otherwise leave one more artifact (tens of MB)
    /// per save.
    pub(crate) fn keep_only(&self, engine: &wasmtime::Engine, current: &[PathBuf]) -> usize {
        let keep: Vec<PathBuf> = current
            .iter()
            .filter_map(|file| std::fs::read(file).ok())
            .map(|bytes| self.path(engine, &bytes))
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "cwasm") && !keep.contains(path))
            .filter(|path| std::fs::remove_file(path).is_ok())
            .count()
    }

    /// The seal of `artifact` stored as `path`: the name is sealed too, so that one component's
    /// artifact cannot be passed off as another's.
    fn mac(&self, path: &Path, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }
}

/// Loads native code compiled by this runtime.
#[expect(
    unsafe_code,
    reason = "wasmtime cannot check native code: the caller has verified the seal, so the bytes \
              are what this runtime's own `serialize` wrote"
)]
fn deserialize(engine: &wasmtime::Engine, artifact: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `artifact` was produced by `Component::serialize` of this runtime and sealed with
    // a key only its state folder holds (checked by the caller); wasmtime itself checks that it
    // was compiled by the same version with compatible settings.
    unsafe { Component::deserialize(engine, artifact) }.map_err(anyhow::Error::from)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineSize};

    fn engine() -> Engine {
        Engine::new(EngineSize {
            memory: crate::config::DEFAULT_MEMORY_LIMIT,
            table_elements: 1000,
            max_memories: 1,
            max_tables: 1,
            pooled_executions: None,
            enforce_limits: true,
        })
        .unwrap()
    }

    #[test]
    fn only_what_this_state_folder_sealed_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let engine = engine();
        let engine = engine.wasmtime();
        let bytes = std::fs::read(micros_guests::HELLO).unwrap();
        let cache = CompileCache::open(&state).unwrap();
        assert!(cache.load(engine, &bytes).is_none());
        let component = Component::from_binary(engine, &bytes).unwrap();
        cache.store(engine, &bytes, &component).unwrap();
        assert!(cache.load(engine, &bytes).is_some());
        // The same key after a restart.
        assert!(
            CompileCache::open(&state)
                .unwrap()
                .load(engine, &bytes)
                .is_some()
        );
        // Another component's bytes name another file.
        assert!(cache.load(engine, b"\0asm other").is_none());
        // One byte changed in the native code: refused.
        let path = cache.path(engine, &bytes);
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 1;
        file[last] ^= 1;
        std::fs::write(&path, &file).unwrap();
        assert!(cache.load(engine, &bytes).is_none());
        // A valid artifact sealed by another state folder (another key): refused.
        cache.store(engine, &bytes, &component).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = CompileCache::open(&StateDir::open(other_dir.path()).unwrap()).unwrap();
        std::fs::copy(&path, other.path(engine, &bytes)).unwrap();
        assert!(other.load(engine, &bytes).is_none());
        // Only the current components' artifacts are kept.
        let hello = dir.path().join("hello.wasm");
        let echo = dir.path().join("echo.wasm");
        std::fs::write(&hello, &bytes).unwrap();
        std::fs::copy(micros_guests::ECHO, &echo).unwrap();
        let echo_bytes = std::fs::read(&echo).unwrap();
        let echo_component = Component::from_binary(engine, &echo_bytes).unwrap();
        cache.store(engine, &echo_bytes, &echo_component).unwrap();
        assert_eq!(cache.keep_only(engine, &[hello.clone(), echo.clone()]), 0);
        assert_eq!(cache.keep_only(engine, &[echo]), 1);
        assert!(cache.load(engine, &bytes).is_none());
        assert!(cache.load(engine, &echo_bytes).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(CACHE_DIR).join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
