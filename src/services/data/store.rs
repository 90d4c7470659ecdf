//! Where Base items live: the [`ItemStore`] trait, and its embedded default on SQLite (one file
//! in the app's state folder, WAL, every write committed durably before it is acknowledged),
//! which also holds Drive's files (`files.rs`).

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde_json::{Map, Value};

/// A Base item: a JSON object that holds its `key`.
pub(crate) type Item = Map<String, Value>;

/// What a read-modify-write decided.
pub(crate) enum Change<T> {
    /// Write this item back, then answer with `T`.
    Write(Item, T),
    /// Write nothing, answer with `T`.
    Keep(T),
}

/// The storage behind Base: items by app-wide base name and key. Every method is a whole
/// transaction that is durable when it returns `Ok`. An item whose `__expires` (Unix seconds)
/// is before `now` is as good as absent (as on Deta, it is still there in its last second).
/// Implementations block: callers run them on a
/// blocking thread.
pub(crate) trait ItemStore: Send + Sync {
    /// The item at `key`.
    fn get(&self, base: &str, key: &str, now: i64) -> anyhow::Result<Option<Item>>;
    /// Writes every item (each holds its `key`), replacing what was there, all or nothing.
    fn put(&self, base: &str, items: &[Item]) -> anyhow::Result<()>;
    /// Reads the item at `key` (`None` if absent), lets `change` decide, and writes what it
    /// returns, in one transaction.
    fn modify(
        &self,
        base: &str,
        key: &str,
        now: i64,
        change: &mut dyn FnMut(Option<Item>) -> Change<DataResult>,
    ) -> anyhow::Result<DataResult>;
    /// Removes the item at `key`, if any.
    fn delete(&self, base: &str, key: &str) -> anyhow::Result<()>;
    /// Removes up to `max` items of any base that expired before `now`: they are never read
    /// again, so this only gives their space back. Returns how many went.
    fn purge_expired(&self, now: i64, max: usize) -> anyhow::Result<usize>;
    /// Bytes the store takes on disk (items, files and uploads together), as the app's data
    /// limit counts them.
    fn used_bytes(&self) -> anyhow::Result<u64>;
    /// Visits live items in key order (descending if `descending`), starting after `after`,
    /// until `visit` returns `false`.
    fn scan(
        &self,
        base: &str,
        after: Option<&str>,
        descending: bool,
        now: i64,
        visit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()>;
}

/// What a read-modify-write answers: an item, or a refusal with its status and message.
pub(crate) type DataResult = Result<Item, (u16, String)>;

/// Rows visited per statement while scanning: a page of the table at a time, so that a scan
/// never holds the lock for a whole large base.
const SCAN_PAGE: i64 = 256;

/// The embedded store: one SQLite file, one connection behind a lock (an app's Micros are few
/// and their writes small; one writer at a time is what SQLite allows anyway).
pub(crate) struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        let connection = Connection::open(path)
            .with_context(|| format!("failed to open the app's data at `{}`", path.display()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS items (
                     base TEXT NOT NULL,
                     key TEXT NOT NULL,
                     item TEXT NOT NULL,
                     expires INTEGER,
                     PRIMARY KEY (base, key)
                 ) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS items_expires ON items (expires) WHERE expires IS NOT NULL;
                 CREATE TABLE IF NOT EXISTS files (
                     drive TEXT NOT NULL,
                     name TEXT NOT NULL,
                     content_type TEXT NOT NULL,
                     data BLOB NOT NULL,
                     PRIMARY KEY (drive, name)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS uploads (
                     id TEXT PRIMARY KEY,
                     drive TEXT NOT NULL,
                     name TEXT NOT NULL,
                     content_type TEXT NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS parts (
                     upload TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
                     part INTEGER NOT NULL,
                     data BLOB NOT NULL,
                     PRIMARY KEY (upload, part)
                 );
                 PRAGMA foreign_keys = ON;",
            )
            .with_context(|| {
                format!(
                    "`{}` is not usable as the app's data (damaged, or not a micros data file)",
                    path.display()
                )
            })?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// The connection, for this store's parts (`files`).
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `__expires` of an item, if it is a number.
fn expires(item: &Item) -> Option<i64> {
    item.get("__expires").and_then(Value::as_i64)
}

fn key_of(item: &Item) -> anyhow::Result<&str> {
    item.get("key")
        .and_then(Value::as_str)
        .context("an item to store has no string key")
}

fn parse(text: &str) -> anyhow::Result<Item> {
    serde_json::from_str(text).context("a stored item is not a JSON object")
}

/// Stores `item` (which holds its key) in `base`, replacing any of the same key.
/// Bytes the database takes, as `connection` sees it (its own uncommitted writes and committed
/// WAL frames included): the pages in use, the file's pages less its free list. What the data
/// limit counts.
pub(super) fn used_bytes(connection: &Connection) -> anyhow::Result<u64> {
    let pragma = |name: &str| -> anyhow::Result<u64> {
        let value: i64 = connection.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    Ok(pages.saturating_mul(pragma("page_size")?))
}

pub(super) fn write(connection: &Connection, base: &str, item: &Item) -> anyhow::Result<()> {
    connection.execute(
        "INSERT OR REPLACE INTO items (base, key, item, expires) VALUES (?1, ?2, ?3, ?4)",
        params![
            base,
            key_of(item)?,
            serde_json::to_string(item)?,
            expires(item)
        ],
    )?;
    Ok(())
}

/// The item at `key` of `base`, unless it expired before `now`.
fn read_live(
    connection: &Connection,
    base: &str,
    key: &str,
    now: i64,
) -> anyhow::Result<Option<Item>> {
    let text: Option<String> = connection
        .query_row(
            "SELECT item FROM items WHERE base = ?1 AND key = ?2 \
             AND (expires IS NULL OR expires >= ?3)",
            params![base, key, now],
            |row| row.get(0),
        )
        .optional()?;
    text.as_deref().map(parse).transpose()
}

impl ItemStore for SqliteStore {
    fn get(&self, base: &str, key: &str, now: i64) -> anyhow::Result<Option<Item>> {
        read_live(&self.lock(), base, key, now)
    }

    fn put(&self, base: &str, items: &[Item]) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        for item in items {
            write(&tx, base, item)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn modify(
        &self,
        base: &str,
        key: &str,
        now: i64,
        change: &mut dyn FnMut(Option<Item>) -> Change<DataResult>,
    ) -> anyhow::Result<DataResult> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let current = read_live(&tx, base, key, now)?;
        match change(current) {
            Change::Keep(answer) => Ok(answer),
            Change::Write(item, answer) => {
                write(&tx, base, &item)?;
                tx.commit()?;
                Ok(answer)
            }
        }
    }

    fn delete(&self, base: &str, key: &str) -> anyhow::Result<()> {
        self.lock().execute(
            "DELETE FROM items WHERE base = ?1 AND key = ?2",
            params![base, key],
        )?;
        Ok(())
    }

    fn used_bytes(&self) -> anyhow::Result<u64> {
        used_bytes(&self.lock())
    }

    fn purge_expired(&self, now: i64, max: usize) -> anyhow::Result<usize> {
        Ok(self.lock().execute(
            "DELETE FROM items WHERE (base, key) IN \
             (SELECT base, key FROM items WHERE expires < ?1 LIMIT ?2)",
            params![now, i64::try_from(max).unwrap_or(i64::MAX)],
        )?)
    }

    fn scan(
        &self,
        base: &str,
        after: Option<&str>,
        descending: bool,
        now: i64,
        visit: &mut dyn FnMut(Item) -> bool,
    ) -> anyhow::Result<()> {
        let sql = if descending {
            "SELECT key, item FROM items WHERE base = ?1 AND (?2 IS NULL OR key < ?2) \
             AND (expires IS NULL OR expires >= ?3) ORDER BY key DESC LIMIT ?4"
        } else {
            "SELECT key, item FROM items WHERE base = ?1 AND (?2 IS NULL OR key > ?2) \
             AND (expires IS NULL OR expires >= ?3) ORDER BY key ASC LIMIT ?4"
        };
        let mut after = after.map(str::to_string);
        loop {
            let page: Vec<(String, String)> = {
                let connection = self.lock();
                let mut statement = connection.prepare_cached(sql)?;
                statement
                    .query_map(params![base, after, now, SCAN_PAGE], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?
            };
            let full = page.len() as i64 == SCAN_PAGE;
            for (key, text) in page {
                if !visit(parse(&text)?) {
                    return Ok(());
                }
                after = Some(key);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, expires: Option<i64>) -> Item {
        let mut item = Item::new();
        item.insert("key".into(), Value::from(key));
        if let Some(expires) = expires {
            item.insert("__expires".into(), Value::from(expires));
        }
        item
    }

    #[test]
    fn expired_items_are_purged_a_few_at_a_time_and_live_ones_never() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("data.sqlite3")).expect("store");
        let mut items: Vec<Item> = (0..5)
            .map(|i| item(&format!("old{i}"), Some(100)))
            .collect();
        items.push(item("last-second", Some(200)));
        items.push(item("forever", None));
        store.put("b", &items).expect("put");
        // At 200, the item expiring at 200 is still live; the five at 100 are gone, 3 at a time.
        assert_eq!(store.purge_expired(200, 3).expect("purge"), 3);
        assert_eq!(store.purge_expired(200, 3).expect("purge"), 2);
        assert_eq!(store.purge_expired(200, 3).expect("purge"), 0);
        let mut left = Vec::new();
        store
            .scan("b", None, false, 0, &mut |item| {
                left.push(item["key"].as_str().unwrap_or_default().to_string());
                true
            })
            .expect("scan");
        assert_eq!(left, ["forever", "last-second"]);
        assert!(store.get("b", "last-second", 200).expect("get").is_some());
        assert!(store.get("b", "last-second", 201).expect("get").is_none());
    }
}
