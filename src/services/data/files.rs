//! Where Drive's files live: the [`FileStore`] trait, and its implementation in the app's SQLite
//! store (each file a blob, written in one transaction: a file is there whole or not at all).

use rusqlite::{OptionalExtension as _, params};

use super::store::SqliteStore;

/// A stored file: its content type and bytes.
pub(crate) struct File {
    pub(crate) content_type: String,
    pub(crate) data: Vec<u8>,
}

/// What finishing a chunked upload found.
pub(crate) enum Finished {
    /// The file is stored.
    Stored,
    /// No such upload (for this drive and name).
    NoUpload,
    /// The parts together are past `max` bytes; the upload is kept, so it can be aborted.
    TooLarge(u64),
}

/// The storage behind Drive: files by drive and name, and chunked uploads in progress. Every
/// method is one transaction, durable when it returns `Ok`. Implementations block.
pub(crate) trait FileStore: Send + Sync {
    /// Stores a whole file, replacing any of the same name.
    fn put_file(
        &self,
        drive: &str,
        name: &str,
        content_type: &str,
        data: &[u8],
    ) -> anyhow::Result<()>;
    /// The file called `name`.
    fn get_file(&self, drive: &str, name: &str) -> anyhow::Result<Option<File>>;
    /// Up to `limit` names starting with `prefix`, after `after`, in order; and whether more
    /// follow.
    fn list(
        &self,
        drive: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<(Vec<String>, bool)>;
    /// Removes the file called `name`; whether it was there.
    fn delete_file(&self, drive: &str, name: &str) -> anyhow::Result<bool>;
    /// The size of the file called `name`, if there is one.
    fn file_size(&self, drive: &str, name: &str) -> anyhow::Result<Option<u64>>;
    /// The size of upload `id` of `name`, its parts together, if there is such an upload.
    fn upload_size(&self, drive: &str, name: &str, id: &str) -> anyhow::Result<Option<u64>>;
    /// Starts a chunked upload of `name` under `id`.
    fn start_upload(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        content_type: &str,
    ) -> anyhow::Result<()>;
    /// Stores part `part` of upload `id` (replacing one of the same number); `false` if there
    /// is no such upload of `name`.
    fn put_part(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        part: u32,
        data: &[u8],
    ) -> anyhow::Result<bool>;
    /// Joins the parts of upload `id` in order into the file, if they are at most `max` bytes.
    fn finish_upload(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        max: u64,
    ) -> anyhow::Result<Finished>;
    /// Drops upload `id` and its parts; `false` if there is no such upload of `name`.
    fn abort_upload(&self, drive: &str, name: &str, id: &str) -> anyhow::Result<bool>;
}

impl FileStore for SqliteStore {
    fn put_file(
        &self,
        drive: &str,
        name: &str,
        content_type: &str,
        data: &[u8],
    ) -> anyhow::Result<()> {
        write_file(&self.lock(), drive, name, content_type, data)
    }

    fn get_file(&self, drive: &str, name: &str) -> anyhow::Result<Option<File>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT content_type, data FROM files WHERE drive = ?1 AND name = ?2",
                params![drive, name],
                |row| {
                    Ok(File {
                        content_type: row.get(0)?,
                        data: row.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn list(
        &self,
        drive: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<(Vec<String>, bool)> {
        let connection = self.lock();
        // `substr` rather than LIKE: a prefix may hold `%` and `_`.
        let mut statement = connection.prepare_cached(
            "SELECT name FROM files WHERE drive = ?1 AND substr(name, 1, length(?2)) = ?2 \
             AND (?3 IS NULL OR name > ?3) ORDER BY name LIMIT ?4",
        )?;
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let mut names: Vec<String> = statement
            .query_map(params![drive, prefix, after, fetch], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let more = names.len() > limit;
        names.truncate(limit);
        Ok((names, more))
    }

    fn delete_file(&self, drive: &str, name: &str) -> anyhow::Result<bool> {
        Ok(self.lock().execute(
            "DELETE FROM files WHERE drive = ?1 AND name = ?2",
            params![drive, name],
        )? > 0)
    }

    fn file_size(&self, drive: &str, name: &str) -> anyhow::Result<Option<u64>> {
        let size: Option<i64> = self
            .lock()
            .query_row(
                "SELECT length(data) FROM files WHERE drive = ?1 AND name = ?2",
                params![drive, name],
                |row| row.get(0),
            )
            .optional()?;
        Ok(size.map(|size| u64::try_from(size).unwrap_or(0)))
    }

    fn upload_size(&self, drive: &str, name: &str, id: &str) -> anyhow::Result<Option<u64>> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        if !upload_exists(&tx, drive, name, id)? {
            return Ok(None);
        }
        let size: Option<i64> = tx.query_row(
            "SELECT sum(length(data)) FROM parts WHERE upload = ?1",
            params![id],
            |row| row.get(0),
        )?;
        Ok(Some(u64::try_from(size.unwrap_or(0)).unwrap_or(0)))
    }

    fn start_upload(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        content_type: &str,
    ) -> anyhow::Result<()> {
        self.lock().execute(
            "INSERT INTO uploads (id, drive, name, content_type) VALUES (?1, ?2, ?3, ?4)",
            params![id, drive, name, content_type],
        )?;
        Ok(())
    }

    fn put_part(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        part: u32,
        data: &[u8],
    ) -> anyhow::Result<bool> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        if !upload_exists(&tx, drive, name, id)? {
            return Ok(false);
        }
        tx.execute(
            "INSERT OR REPLACE INTO parts (upload, part, data) VALUES (?1, ?2, ?3)",
            params![id, part, data],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn finish_upload(
        &self,
        drive: &str,
        name: &str,
        id: &str,
        max: u64,
    ) -> anyhow::Result<Finished> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        if !upload_exists(&tx, drive, name, id)? {
            return Ok(Finished::NoUpload);
        }
        let (parts, size): (i64, Option<i64>) = tx.query_row(
            "SELECT count(*), sum(length(data)) FROM parts WHERE upload = ?1",
            params![id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        // No parts is an empty file: a client uploading nothing sends none.
        let _ = parts;
        let size = u64::try_from(size.unwrap_or(0)).unwrap_or(u64::MAX);
        if size > max {
            return Ok(Finished::TooLarge(size));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        {
            let mut statement =
                tx.prepare("SELECT data FROM parts WHERE upload = ?1 ORDER BY part")?;
            let mut rows = statement.query(params![id])?;
            while let Some(row) = rows.next()? {
                data.extend_from_slice(row.get_ref(0)?.as_blob()?);
            }
        }
        let content_type: String = tx.query_row(
            "SELECT content_type FROM uploads WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )?;
        write_file(&tx, drive, name, &content_type, &data)?;
        tx.execute("DELETE FROM uploads WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(Finished::Stored)
    }

    fn abort_upload(&self, drive: &str, name: &str, id: &str) -> anyhow::Result<bool> {
        Ok(self.lock().execute(
            "DELETE FROM uploads WHERE id = ?1 AND drive = ?2 AND name = ?3",
            params![id, drive, name],
        )? > 0)
    }
}

/// Stores a whole file, replacing any of the same name.
pub(super) fn write_file(
    connection: &rusqlite::Connection,
    drive: &str,
    name: &str,
    content_type: &str,
    data: &[u8],
) -> anyhow::Result<()> {
    connection.execute(
        "INSERT OR REPLACE INTO files (drive, name, content_type, data) VALUES (?1, ?2, ?3, ?4)",
        params![drive, name, content_type, data],
    )?;
    Ok(())
}

fn upload_exists(
    tx: &rusqlite::Transaction<'_>,
    drive: &str,
    name: &str,
    id: &str,
) -> anyhow::Result<bool> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM uploads WHERE id = ?1 AND drive = ?2 AND name = ?3",
            params![id, drive, name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
