//! The compile cache: compiled components in the state folder, keyed by the component's hash
//! and wasmtime's compatibility hash, each sealed with a key only this state folder holds, so
//! that the runtime never loads native code it did not write itself. An artifact is mapped from
//! its file, not copied into memory: its pages are the kernel's page cache, read in as used.

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::settings::state::StateDir;

/// The cache's folder inside the state folder.
pub(crate) const CACHE_DIR: &str = "cache";
/// The file holding the sealing key, inside the cache folder.
const KEY_FILE: &str = "key";
/// Characters of the sealing key: 64 of 62 symbols, about 380 bits.
const KEY_LEN: usize = 64;
/// The extension of a compiled component: the artifact as wasmtime wrote it, so that it can be
/// mapped as it is.
const ARTIFACT_EXTENSION: &str = "cwasm";
/// The extension of an artifact's seal, in a file of its own beside it.
const SEAL_EXTENSION: &str = "seal";
/// Bytes read at a time while an artifact's seal is checked.
const READ_CHUNK: usize = 1 << 20;

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
                let key = crate::settings::state::random_string(
                    KEY_LEN,
                    crate::settings::state::ALPHANUMERIC,
                );
                crate::settings::state::write_private(&key_path, &key)?;
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
        self.dir.join(format!(
            "{component}-{:016x}.{ARTIFACT_EXTENSION}",
            hasher.finish()
        ))
    }

    /// The cached compilation of `bytes`, if there is one with a valid seal; a damaged or
    /// foreign file is ignored (and replaced when the component is compiled again).
    pub(crate) fn load(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> Option<Component> {
        let path = self.path(engine, bytes);
        let seal = std::fs::read(path.with_extension(SEAL_EXTENSION)).ok()?;
        let file = std::fs::File::open(&path).ok()?;
        let mut mac = self.mac(&path);
        let mut reader = std::io::BufReader::with_capacity(READ_CHUNK, &file);
        if let Err(error) = std::io::copy(&mut reader, &mut mac) {
            tracing::warn!(path = %path.display(), "a cached component could not be read: {error}");
            return None;
        }
        if mac.verify_slice(&seal).is_err() {
            tracing::warn!(
                path = %path.display(),
                "a compiled component in the cache has no valid seal: ignored, compiling again"
            );
            return None;
        }
        match map(engine, &path, &file) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), "a cached component did not load: {error:#}");
                None
            }
        }
    }

    /// Stores the compilation of `bytes` and its seal, each file atomically, so a reader never
    /// sees half of one (between the two, it sees an artifact without its seal, and compiles);
    /// returns the component mapped from the file just written, which then no longer needs the
    /// copy in the process's own memory that compiling made.
    pub(crate) fn store(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        component: &Component,
    ) -> anyhow::Result<Component> {
        let path = self.path(engine, bytes);
        let artifact = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("failed to serialize a compiled component")?;
        let mut mac = self.mac(&path);
        mac.update(&artifact);
        let seal = mac.finalize().into_bytes();
        let written = write_atomically(&path, &artifact)?;
        write_atomically(&path.with_extension(SEAL_EXTENSION), &seal)?;
        map(engine, &path, &written).with_context(|| format!("failed to map `{}`", path.display()))
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
        // Seals go with their artifacts (and a seal whose artifact is gone, with it).
        let stale = |path: &Path, extension: &str| {
            path.extension().is_some_and(|e| e == extension)
                && !keep.contains(&path.with_extension(ARTIFACT_EXTENSION))
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for path in entries.flatten().map(|entry| entry.path()) {
            if stale(&path, SEAL_EXTENSION) {
                let _ = std::fs::remove_file(&path);
            } else if stale(&path, ARTIFACT_EXTENSION) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The seal of an artifact stored as `path`, to be fed the artifact's bytes: the name is
    /// sealed too, so that one component's artifact cannot be passed off as another's.
    fn mac(&self, path: &Path) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(path.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        mac.update(&[0]);
        mac
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so that a reader (or a
/// mapping of the file before) never sees a partial or changing file; returns the file written,
/// open for reading.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<std::fs::File> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            std::fs::rename(&tmp, path)?;
            Ok(file)
        })
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// Maps native code compiled by this runtime from the file `opened` of `path`, whose seal the
/// caller has checked (or which it has just written).
///
/// Where the kernel shows a process its open files (`/proc/self/fd`), the very file that was
/// checked is mapped; elsewhere `path` is opened again, and a file renamed over it between the
/// check and the mapping would be mapped unchecked. Only the cache's own writes rename files
/// there, and whoever else could would also hold the key beside them.
#[expect(
    unsafe_code,
    reason = "wasmtime cannot check native code: the caller has verified the seal, so the bytes \
              are what this runtime's own `serialize` wrote"
)]
fn map(
    engine: &wasmtime::Engine,
    path: &Path,
    opened: &std::fs::File,
) -> anyhow::Result<Component> {
    #[cfg(target_os = "linux")]
    let path = {
        use std::os::fd::AsRawFd as _;
        let checked = PathBuf::from(format!("/proc/self/fd/{}", opened.as_raw_fd()));
        if checked.exists() {
            checked
        } else {
            path.to_path_buf()
        }
    };
    #[cfg(not(target_os = "linux"))]
    let _ = opened;
    // SAFETY: the file was produced by `Component::serialize` of this runtime and sealed with a
    // key only its state folder holds (checked by the caller); wasmtime itself checks that it
    // was compiled by the same version with compatible settings. The cache never writes a file
    // in place (`write_atomically`), so a mapped file does not change under the mapping.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
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
            memory: crate::settings::limits::DEFAULT_MEMORY_LIMIT,
            table_elements: 1000,
            max_memories: 1,
            max_tables: 1,
            pooled_executions: None,
            enforce_limits: true,
        })
        .unwrap()
    }

    /// The lines of this process's memory map that map `file`.
    #[cfg(target_os = "linux")]
    fn mappings_of(file: &Path) -> usize {
        let file = std::fs::canonicalize(file).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter(|l| l.ends_with(file.to_str().unwrap()))
            .count()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_component_compiled_at_load_is_mapped_back_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(&StateDir::open(dir.path()).unwrap()).unwrap();
        let engine = engine();
        let hello = Path::new(micros_guests::HELLO);
        let budget = crate::settings::limits::CompileBudget::default();
        let component = engine.compile("web", hello, &budget, Some(&cache)).unwrap();
        let file = cache.path(engine.wasmtime(), &std::fs::read(hello).unwrap());
        assert!(
            mappings_of(&file) > 0,
            "the artifact just stored is not mapped"
        );
        drop(component);
        assert_eq!(mappings_of(&file), 0, "unmapped with its component");
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
        let loaded = cache
            .load(engine, &bytes)
            .expect("the artifact just stored");
        // Mapped from its file, not copied into the process's memory.
        #[cfg(target_os = "linux")]
        assert!(mappings_of(&cache.path(engine, &bytes)) > 0);
        drop(loaded);
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
        let other_path = other.path(engine, &bytes);
        std::fs::copy(&path, &other_path).unwrap();
        assert!(other.load(engine, &bytes).is_none(), "no seal");
        let seal = path.with_extension(SEAL_EXTENSION);
        std::fs::copy(&seal, other_path.with_extension(SEAL_EXTENSION)).unwrap();
        assert!(
            other.load(engine, &bytes).is_none(),
            "another folder's seal"
        );
        // A seal of another artifact: refused.
        let echo_path = cache.path(engine, &std::fs::read(micros_guests::ECHO).unwrap());
        std::fs::copy(&seal, echo_path.with_extension(SEAL_EXTENSION)).unwrap();
        std::fs::copy(&path, &echo_path).unwrap();
        assert!(
            cache
                .load(engine, &std::fs::read(micros_guests::ECHO).unwrap())
                .is_none()
        );
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
        assert!(!seal.exists(), "a seal goes with its artifact");
        assert!(echo_path.with_extension(SEAL_EXTENSION).exists());
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
