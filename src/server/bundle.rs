//! Bundles: an app folder packed by `micros push` into a gzip'd tar, and unpacked by the server,
//! the front door for hostile archives: every entry is checked before it is written.

mod ignore;
mod pack;
mod unpack;

pub(crate) use pack::pack;
pub(crate) use unpack::unpack;

/// Entries a bundle may hold (files and folders).
pub(crate) const MAX_ENTRIES: usize = 20_000;
/// Bytes of files a bundle may unpack to: Space's 250 MB per Micro, five Micros.
pub(crate) const MAX_UNPACKED_BYTES: u64 = 5 * 250 * 1000 * 1000;
/// How many times larger than its compressed form a bundle may unpack (a decompression bomb
/// past it).
pub(crate) const MAX_RATIO: u64 = 200;
/// Name of the file of ignore patterns in an app folder, as on Space.
pub(crate) const IGNORE_FILE: &str = ".spaceignore";

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Files and folders written, the folders a path implies included.
    pub entries: usize,
    /// Bytes of the files written.
    pub bytes: u64,
}

/// Why a bundle was refused: the entry (if one is to blame) and the rule, for a 400 that names
/// both.
#[derive(Debug, thiserror::Error)]
#[error(
    "bundle{}: {rule}",
    entry.as_ref().map_or_else(String::new, |entry| format!(" entry `{entry}`"))
)]
pub(crate) struct BundleError {
    /// The entry's path as the archive gave it (shortened if very long), if one is to blame.
    pub entry: Option<String>,
    /// The rule it broke, and what to do.
    pub rule: String,
}

impl BundleError {
    /// A refusal of the whole bundle.
    fn bundle(rule: impl Into<String>) -> Self {
        Self {
            entry: None,
            rule: rule.into(),
        }
    }

    /// A refusal of one entry, named as the archive gave it.
    fn entry(entry: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            entry: Some(entry.into()),
            rule: rule.into(),
        }
    }
}

#[cfg(test)]
mod tests;
