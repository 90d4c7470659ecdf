//! What the server remembers, behind one trait: users and their deploy tokens (hashed), apps and
//! their owners, releases, and custom domains. SQLite in the state folder is the first
//! implementation; another store (PostgreSQL, for several nodes) implements the same trait.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};

/// A user of the server: who deploys, and owns what they deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    /// Their name (`micros users add NAME`).
    pub name: String,
    /// Whether they run the server: they may add users and see every app.
    pub operator: bool,
}

/// An app as the server records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRecord {
    /// Its name: its host is `<name>.<domain>`.
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// The release it serves, if one was pushed.
    pub current: Option<u64>,
    /// For an instance (`micros install`), the app whose releases it runs; `None` for an app
    /// that is pushed to.
    pub source: Option<String>,
}

/// One release of an app: an unpacked, checked bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    /// Its number within the app, from 1.
    pub id: u64,
    /// The manifest's `version`.
    pub version: String,
    /// When it was pushed (RFC 3339, UTC).
    pub created: String,
    /// Bytes of the bundle as uploaded.
    pub bytes: u64,
}

/// Everything the server remembers. Each method is one transaction.
pub(crate) trait Registry: Send + Sync + 'static {
    /// Every user.
    fn users(&self) -> anyhow::Result<Vec<User>>;
    /// Adds a user; an error if the name is taken.
    fn add_user(&self, user: &User) -> anyhow::Result<()>;
    /// Keeps a deploy token of `user`, by its hash.
    fn add_token(&self, user: &str, token: &str) -> anyhow::Result<()>;
    /// The user a deploy token belongs to.
    fn user_for_token(&self, token: &str) -> anyhow::Result<Option<User>>;
    /// Every app.
    fn apps(&self) -> anyhow::Result<Vec<AppRecord>>;
    /// One app.
    fn app(&self, name: &str) -> anyhow::Result<Option<AppRecord>>;
    /// Records a new app of `owner`, with no release yet.
    fn add_app(&self, name: &str, owner: &str) -> anyhow::Result<()>;
    /// Records an instance `name` of `source`, owned by `owner`, serving `release` of
    /// `source`'s.
    fn add_instance(
        &self,
        name: &str,
        owner: &str,
        source: &str,
        release: u64,
    ) -> anyhow::Result<()>;
    /// Forgets an app, its releases and its domains.
    fn delete_app(&self, name: &str) -> anyhow::Result<()>;
    /// Records a release of `app` and returns its number (one past the highest so far).
    fn add_release(&self, app: &str, version: &str, bytes: u64) -> anyhow::Result<Release>;
    /// Records the manifest's version of a release, once it is known.
    fn set_version(&self, app: &str, id: u64, version: &str) -> anyhow::Result<()>;
    /// The releases of `app`, newest first.
    fn releases(&self, app: &str) -> anyhow::Result<Vec<Release>>;
    /// Forgets a release.
    fn remove_release(&self, app: &str, id: u64) -> anyhow::Result<()>;
    /// Makes `release` the one `app` serves.
    fn set_current(&self, app: &str, release: u64) -> anyhow::Result<()>;
    /// Every custom domain, with its app.
    fn domains(&self) -> anyhow::Result<Vec<(String, String)>>;
    /// Serves `app` at `host` too; an error if another app has it.
    fn add_domain(&self, host: &str, app: &str) -> anyhow::Result<()>;
    /// The preset values set for `app` (`micros env set`), as `--env` would give them.
    fn presets(&self, app: &str) -> anyhow::Result<Vec<Preset>>;
    /// Sets a preset value of `app`, for one Micro or (`micro` empty) every Micro declaring it.
    fn set_preset(&self, app: &str, preset: &Preset) -> anyhow::Result<()>;
}

/// A preset value an app's owner set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Preset {
    /// The Micro it is for; empty for every Micro that declares it.
    pub micro: String,
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The registry in a SQLite file.
pub(crate) struct SqliteRegistry {
    connection: Mutex<Connection>,
}

/// The tables, made if missing.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    operator INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    sha256 TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES users(name),
    current INTEGER,
    source TEXT REFERENCES apps(name)
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    version TEXT NOT NULL,
    created TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (app, id)
);
CREATE TABLE IF NOT EXISTS domains (
    host TEXT PRIMARY KEY,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS presets (
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    micro TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, micro, name)
);
";

impl SqliteRegistry {
    /// Opens (or makes) the registry at `path`.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let connection = Connection::open(path)
            .with_context(|| format!("failed to open the registry `{}`", path.display()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .context("failed to set up the registry")?;
        connection
            .execute_batch(SCHEMA)
            .context("failed to make the registry's tables")?;
        migrate(&connection).context("failed to bring the registry up to date")?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        f(&connection).context("the registry failed")
    }
}

/// Brings a registry written by an earlier micros up to this one's tables: columns added
/// since are added, empty for the rows already there.
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    let has_source = connection
        .prepare("SELECT 1 FROM pragma_table_info('apps') WHERE name = 'source'")?
        .exists([])?;
    if !has_source {
        connection
            .execute_batch("ALTER TABLE apps ADD COLUMN source TEXT REFERENCES apps(name)")?;
    }
    Ok(())
}

/// SHA-256 of a token, hex: the registry keeps no token itself.
fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn app_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        name: row.get(0)?,
        owner: row.get(1)?,
        current: row.get::<_, Option<i64>>(2)?.map(|id| id as u64),
        source: row.get(3)?,
    })
}

impl Registry for SqliteRegistry {
    fn users(&self) -> anyhow::Result<Vec<User>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT name, operator FROM users ORDER BY name")?;
            let rows = statement.query_map([], |row| {
                Ok(User {
                    name: row.get(0)?,
                    operator: row.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    fn add_user(&self, user: &User) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO users (name, operator) VALUES (?1, ?2)",
                params![user.name, user.operator],
            )
        })
        .map(|_| ())
    }

    fn add_token(&self, user: &str, token: &str) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (sha256, user, created) VALUES (?1, ?2, ?3)",
                params![hash(token), user, now()],
            )
        })
        .map(|_| ())
    }

    fn user_for_token(&self, token: &str) -> anyhow::Result<Option<User>> {
        self.with(|c| {
            c.query_row(
                "SELECT users.name, users.operator FROM tokens JOIN users ON users.name = tokens.user \
                 WHERE tokens.sha256 = ?1",
                params![hash(token)],
                |row| {
                    Ok(User {
                        name: row.get(0)?,
                        operator: row.get(1)?,
                    })
                },
            )
            .optional()
        })
    }

    fn apps(&self) -> anyhow::Result<Vec<AppRecord>> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT name, owner, current, source FROM apps ORDER BY name")?;
            let rows = statement.query_map([], app_record)?;
            rows.collect()
        })
    }

    fn app(&self, name: &str) -> anyhow::Result<Option<AppRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT name, owner, current, source FROM apps WHERE name = ?1",
                params![name],
                app_record,
            )
            .optional()
        })
    }

    fn add_app(&self, name: &str, owner: &str) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO apps (name, owner) VALUES (?1, ?2)",
                params![name, owner],
            )
        })
        .map(|_| ())
    }

    fn add_instance(
        &self,
        name: &str,
        owner: &str,
        source: &str,
        release: u64,
    ) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO apps (name, owner, current, source) VALUES (?1, ?2, ?3, ?4)",
                params![name, owner, release as i64, source],
            )
        })
        .map(|_| ())
    }

    fn delete_app(&self, name: &str) -> anyhow::Result<()> {
        self.with(|c| c.execute("DELETE FROM apps WHERE name = ?1", params![name]))
            .map(|_| ())
    }

    fn add_release(&self, app: &str, version: &str, bytes: u64) -> anyhow::Result<Release> {
        let created = now();
        let id = self.with(|c| {
            let id: i64 = c.query_row(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM releases WHERE app = ?1",
                params![app],
                |row| row.get(0),
            )?;
            c.execute(
                "INSERT INTO releases (app, id, version, created, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![app, id, version, created, bytes as i64],
            )?;
            Ok(id)
        })?;
        Ok(Release {
            id: id as u64,
            version: version.to_string(),
            created,
            bytes,
        })
    }

    fn set_version(&self, app: &str, id: u64, version: &str) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE releases SET version = ?3 WHERE app = ?1 AND id = ?2",
                params![app, id as i64, version],
            )
        })
        .map(|_| ())
    }

    fn releases(&self, app: &str) -> anyhow::Result<Vec<Release>> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT id, version, created, bytes FROM releases WHERE app = ?1 ORDER BY id DESC",
            )?;
            let rows = statement.query_map(params![app], |row| {
                Ok(Release {
                    id: row.get::<_, i64>(0)? as u64,
                    version: row.get(1)?,
                    created: row.get(2)?,
                    bytes: row.get::<_, i64>(3)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn remove_release(&self, app: &str, id: u64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM releases WHERE app = ?1 AND id = ?2",
                params![app, id as i64],
            )
        })
        .map(|_| ())
    }

    fn set_current(&self, app: &str, release: u64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE apps SET current = ?2 WHERE name = ?1",
                params![app, release as i64],
            )
        })
        .map(|_| ())
    }

    fn domains(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT host, app FROM domains ORDER BY host")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
    }

    fn add_domain(&self, host: &str, app: &str) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO domains (host, app) VALUES (?1, ?2)",
                params![host, app],
            )
        })
        .map(|_| ())
    }

    fn presets(&self, app: &str) -> anyhow::Result<Vec<Preset>> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT micro, name, value FROM presets WHERE app = ?1 ORDER BY micro, name",
            )?;
            let rows = statement.query_map(params![app], |row| {
                Ok(Preset {
                    micro: row.get(0)?,
                    name: row.get(1)?,
                    value: row.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn set_preset(&self, app: &str, preset: &Preset) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO presets (app, micro, name, value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (app, micro, name) DO UPDATE SET value = excluded.value",
                params![app, preset.micro, preset.name, preset.value],
            )
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod preset_tests {
    use super::*;

    #[test]
    fn a_preset_set_twice_keeps_the_last_value_and_goes_with_its_app() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry =
            SqliteRegistry::open(&dir.path().join("server.db")).unwrap_or_else(|e| panic!("{e}"));
        let user = User {
            name: "ada".into(),
            operator: false,
        };
        registry.add_user(&user).unwrap_or_else(|e| panic!("{e}"));
        registry
            .add_app("notes", "ada")
            .unwrap_or_else(|e| panic!("{e}"));
        for value in ["hi", "hello"] {
            let preset = Preset {
                micro: String::new(),
                name: "GREETING".into(),
                value: value.into(),
            };
            registry
                .set_preset("notes", &preset)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let presets = registry.presets("notes").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(presets.len(), 1);
        assert_eq!(presets[0].value, "hello");
        registry
            .delete_app("notes")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            registry
                .presets("notes")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, SqliteRegistry) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry =
            SqliteRegistry::open(&dir.path().join("server.db")).unwrap_or_else(|e| panic!("{e}"));
        (dir, registry)
    }

    #[test]
    fn tokens_are_kept_hashed_and_name_their_user() {
        let (dir, registry) = registry();
        let ada = User {
            name: "ada".into(),
            operator: true,
        };
        registry.add_user(&ada).unwrap_or_else(|e| panic!("{e}"));
        registry
            .add_token("ada", "secret-token-1234")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            registry
                .user_for_token("secret-token-1234")
                .unwrap_or_else(|e| panic!("{e}")),
            Some(ada)
        );
        assert_eq!(
            registry
                .user_for_token("secret-token-123")
                .unwrap_or_else(|e| panic!("{e}")),
            None
        );
        drop(registry);
        let bytes = std::fs::read(dir.path().join("server.db")).unwrap_or_else(|e| panic!("{e}"));
        let wal = std::fs::read(dir.path().join("server.db-wal")).unwrap_or_default();
        for file in [bytes, wal] {
            assert!(
                !file
                    .windows(b"secret-token-1234".len())
                    .any(|w| w == b"secret-token-1234"),
                "the token itself is stored"
            );
        }
    }

    #[test]
    fn releases_count_up_per_app_and_go_with_it() {
        let (_dir, registry) = registry();
        let user = User {
            name: "bo".into(),
            operator: false,
        };
        registry.add_user(&user).unwrap_or_else(|e| panic!("{e}"));
        for app in ["notes", "todo"] {
            registry
                .add_app(app, "bo")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let first = registry
            .add_release("notes", "1.0", 10)
            .unwrap_or_else(|e| panic!("{e}"));
        let second = registry
            .add_release("notes", "1.1", 20)
            .unwrap_or_else(|e| panic!("{e}"));
        let other = registry
            .add_release("todo", "0.1", 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.id, second.id, other.id), (1, 2, 1));
        registry
            .set_current("notes", 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let notes = registry.app("notes").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(notes.and_then(|a| a.current), Some(2));
        let ids: Vec<u64> = registry
            .releases("notes")
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [2, 1]);
        registry
            .add_domain("notes.example.org", "notes")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(registry.add_domain("notes.example.org", "todo").is_err());
        registry
            .delete_app("notes")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            registry
                .releases("notes")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        assert!(
            registry
                .domains()
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        assert_eq!(registry.apps().unwrap_or_else(|e| panic!("{e}")).len(), 1);
    }

    #[test]
    fn a_registry_of_an_earlier_micros_gets_the_instance_column() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("server.db");
        {
            let old = Connection::open(&path).unwrap_or_else(|e| panic!("{e}"));
            old.execute_batch(
                "CREATE TABLE users (name TEXT PRIMARY KEY, operator INTEGER NOT NULL);
                 CREATE TABLE apps (name TEXT PRIMARY KEY, owner TEXT NOT NULL, current INTEGER);
                 INSERT INTO users VALUES ('bo', 0);
                 INSERT INTO apps VALUES ('notes', 'bo', 3);",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let registry = SqliteRegistry::open(&path).unwrap_or_else(|e| panic!("{e}"));
        registry
            .add_instance("notes-2", "bo", "notes", 3)
            .unwrap_or_else(|e| panic!("{e}"));
        let apps = registry.apps().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            apps,
            [
                AppRecord {
                    name: "notes".into(),
                    owner: "bo".into(),
                    current: Some(3),
                    source: None,
                },
                AppRecord {
                    name: "notes-2".into(),
                    owner: "bo".into(),
                    current: Some(3),
                    source: Some("notes".into()),
                },
            ]
        );
        drop(registry);
        // Opening it again finds the column there and leaves it.
        SqliteRegistry::open(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}
