//! What `micros push` leaves out of a bundle: the default ignores and `.spaceignore`'s patterns.

use std::path::Path;

use anyhow::Context as _;
use globset::{GlobBuilder, GlobMatcher};

use super::IGNORE_FILE;
use crate::settings::limits::DEFAULT_STATE_DIR;

/// Names left out at any depth of a Micro's `src`: version control, the state folder, and what
/// builds and package managers make there. A Micro's component file is bundled even under them.
pub(super) const DEFAULT_IGNORES: &[&str] = &[
    ".git",
    DEFAULT_STATE_DIR,
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    ".tools",
];

/// The patterns of an app's `.spaceignore`, in order: the last one to match a path decides.
#[derive(Debug, Default)]
pub(super) struct Ignore {
    /// One per pattern line.
    rules: Vec<Rule>,
}

/// One pattern of `.spaceignore`.
#[derive(Debug)]
struct Rule {
    /// The glob, `/` matched only by `/`.
    matcher: GlobMatcher,
    /// The pattern has a `/` (other than a trailing one): it matches the path from the app
    /// folder; otherwise a name at any depth.
    anchored: bool,
    /// `build/`: matches folders only.
    folders_only: bool,
    /// `!keep.txt`: brings back what an earlier pattern left out.
    negated: bool,
}

impl Ignore {
    /// Reads the app folder's `.spaceignore`; none is no pattern.
    pub(super) fn load(app_dir: &Path) -> anyhow::Result<Self> {
        let file = app_dir.join(IGNORE_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", file.display())),
        }
    }

    /// Parses the patterns of `text`, one a line (`#` comments and blank lines aside); `file`
    /// names it in errors.
    pub(super) fn parse(text: &str, file: &Path) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (folders_only, pattern) = match pattern.strip_suffix('/') {
                Some(rest) => (true, rest),
                None => (false, pattern),
            };
            let anchored = pattern.contains('/');
            let pattern = pattern.trim_start_matches('/');
            if pattern.is_empty() {
                anyhow::bail!(
                    "{}:{}: `{line}` matches nothing\n  help: write a name or a path, such as `*.log` or `docs/drafts`",
                    file.display(),
                    number + 1
                );
            }
            let matcher = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .with_context(|| {
                    format!(
                        "{}:{}: `{line}` is not a valid pattern\n  help: write a glob, such as `*.log` or `docs/**/*.md`",
                        file.display(),
                        number + 1
                    )
                })?
                .compile_matcher();
            rules.push(Rule {
                matcher,
                anchored,
                folders_only,
                negated,
            });
        }
        Ok(Self { rules })
    }

    /// Whether the entry at `path` (from the app folder, `/`-separated) is left out.
    pub(super) fn ignores(&self, path: &str, is_folder: bool) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        let mut ignored = false;
        for rule in &self.rules {
            if rule.folders_only && !is_folder {
                continue;
            }
            let target = if rule.anchored { path } else { name };
            if rule.matcher.is_match(target) {
                ignored = !rule.negated;
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, Path::new(IGNORE_FILE)).unwrap()
    }

    #[test]
    fn a_pattern_without_a_slash_matches_a_name_at_any_depth() {
        let ignore = ignore("# logs\n\n*.log\n");
        assert!(ignore.ignores("web/app.log", false));
        assert!(ignore.ignores("web/deep/er/app.log", false));
        assert!(!ignore.ignores("web/app.logs", false));
    }

    #[test]
    fn a_pattern_with_a_slash_matches_the_path_from_the_app_folder() {
        let ignore = ignore("web/drafts\n/api/*.md\n");
        assert!(ignore.ignores("web/drafts", true));
        assert!(!ignore.ignores("api/web/drafts", true));
        assert!(ignore.ignores("api/notes.md", false));
        assert!(!ignore.ignores("api/docs/notes.md", false));
    }

    #[test]
    fn a_trailing_slash_matches_folders_only_and_a_bang_brings_back() {
        let ignore = ignore("cache/\n*.txt\n!keep.txt\n");
        assert!(ignore.ignores("web/cache", true));
        assert!(!ignore.ignores("web/cache", false));
        assert!(ignore.ignores("web/a.txt", false));
        assert!(!ignore.ignores("web/keep.txt", false));
    }

    #[test]
    fn a_bad_pattern_names_the_file_and_line() {
        let error = Ignore::parse("ok\n[oops\n", Path::new(IGNORE_FILE)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(".spaceignore:2: `[oops` is not a valid pattern"),
            "{error}"
        );
    }
}
