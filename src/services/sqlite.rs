//! Read-only SQLite for Micros (`wit/sqlite.wit`): a guest opens a database file bundled in its
//! own `src` and runs queries that the host executes with SQLite, opened read-only and
//! immutable, on a blocking thread, stopped at the execution's deadline, with its result capped.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::sandbox::{ExecutionInfo, Host, HostPlugin};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        interfaces: "import micros:micro/sqlite@0.1.0;",
        imports: { default: async | trappable },
        with: { "micros:micro/sqlite.database": super::Database },
        require_store_data_send: true,
    });
}

use bindings::micros::micro::sqlite::{self as wit, Error, Rows, Value};

/// Bytes one query's result may take (text and blobs by their length, every other value as
/// 8): the host builds the result in its own memory, outside the guest's limit, before the
/// guest copies it in. Deta allowed 5.5 MB payloads; a result is held to about the same.
pub const MAX_RESULT_BYTES: u64 = 6 * 1024 * 1024;
/// Databases one execution may hold open at once: each is a file handle and a page cache.
pub const MAX_OPEN_DATABASES: usize = 8;
/// Bytes all SQLite connections of the process may allocate together (SQLite's hard heap
/// limit): sorting or grouping a large table in memory fails past it instead of growing the
/// host without bound.
pub const HEAP_LIMIT: u64 = 256 * 1024 * 1024;
/// Page cache of one connection, in KiB (SQLite's negative `cache_size`).
const CACHE_KIB: i64 = 2048;
/// Longest SQL text a guest may send, in bytes.
const MAX_SQL_BYTES: i32 = 100_000;
/// SQLite virtual machine steps between two checks of the deadline: ~1 ms of work or less.
const PROGRESS_STEPS: i32 = 10_000;

/// What a path keeps unescaped in a SQLite URI: `?`, `#` and `%` would end or escape it.
const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// An open database, as the guest holds it.
pub struct Database {
    connection: Arc<Mutex<Connection>>,
    /// The path the guest gave, for messages.
    path: String,
}

/// The SQLite host interface, as a sandbox plug-in.
pub(crate) struct Sqlite;

impl HostPlugin for Sqlite {
    fn add_to_linker(&self, linker: &mut Linker<Host>) -> anyhow::Result<()> {
        wit::add_to_linker::<Host, HasSelf<Host>>(linker, |host| host)
            .map_err(anyhow::Error::from)
            .context("failed to link sqlite")
    }

    fn new_state(&self, execution: &ExecutionInfo<'_>) -> Box<dyn std::any::Any + Send> {
        Box::new(SqliteCtx {
            root: Arc::clone(execution.root),
            deadline: execution.deadline,
            open: 0,
        })
    }
}

/// What one store needs for SQLite: where `src` is and when the execution must end.
struct SqliteCtx {
    /// The Micro's `src`, canonical.
    root: Arc<Path>,
    deadline: Option<Instant>,
    open: usize,
}

impl wit::Host for Host {}

impl wit::HostDatabase for Host {
    async fn open(&mut self, path: String) -> wasmtime::Result<Result<Resource<Database>, Error>> {
        let ctx = self.plugin::<SqliteCtx>()?;
        if ctx.open >= MAX_OPEN_DATABASES {
            return Ok(Err(Error::TooManyOpen(format!(
                "{MAX_OPEN_DATABASES} databases are already open in this execution: drop one first"
            ))));
        }
        let file = match resolve(&ctx.root, &path) {
            Ok(file) => file,
            Err(error) => return Ok(Err(error)),
        };
        let shown = path.clone();
        let opened = tokio::task::spawn_blocking(move || open(&file, &shown)).await?;
        let connection = match opened {
            Ok(connection) => connection,
            Err(error) => return Ok(Err(error)),
        };
        let database = Database {
            connection: Arc::new(Mutex::new(connection)),
            path,
        };
        let handle = self.table().push(database)?;
        self.plugin::<SqliteCtx>()?.open += 1;
        Ok(Ok(handle))
    }

    async fn query(
        &mut self,
        database: Resource<Database>,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, Error>> {
        let deadline = self.plugin::<SqliteCtx>()?.deadline;
        let database = self.table().get(&database)?;
        let connection = Arc::clone(&database.connection);
        let path = database.path.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            query(&mut connection, &path, &sql, params, deadline)
        })
        .await?;
        match ran {
            Ok(rows) => Ok(Ok(rows)),
            Err(Stop::Refused(error)) => Ok(Err(error)),
            // The execution's time is up: it ends as any other that ran past its limit.
            Err(Stop::Deadline) => Err(wasmtime::Trap::Interrupt.into()),
        }
    }

    async fn drop(&mut self, database: Resource<Database>) -> wasmtime::Result<()> {
        self.table().delete(database)?;
        let ctx = self.plugin::<SqliteCtx>()?;
        ctx.open = ctx.open.saturating_sub(1);
        Ok(())
    }
}

/// The file `path` names under `root`, or why the guest may not open it.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, Error> {
    let relative = Path::new(path.trim_start_matches('/'));
    let mut normal = relative.components().filter(|c| *c != Component::CurDir);
    let first = normal.clone().next();
    if normal.any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::OutsideSrc(format!(
            "`{path}`: `..` is not allowed; name a file under the Micro's src"
        )));
    }
    match first {
        None => return Err(Error::NotFound(format!("`{path}` names no file"))),
        Some(Component::Normal(name)) if name == "tmp" => {
            return Err(Error::OutsideSrc(format!(
                "`{path}` is under /tmp: only databases bundled in the Micro's src can be opened"
            )));
        }
        Some(_) => {}
    }
    let file = match root.join(relative).canonicalize() {
        Ok(file) => file,
        Err(_) => {
            return Err(Error::NotFound(format!(
                "`{path}`: no such file in the Micro's src"
            )));
        }
    };
    if !file.starts_with(root) {
        return Err(Error::OutsideSrc(format!(
            "`{path}` leads out of the Micro's src (a symbolic link?)"
        )));
    }
    if !file.is_file() {
        return Err(Error::NotFound(format!("`{path}` is not a file")));
    }
    Ok(file)
}

/// Opens `file` read-only and immutable, with the limits every connection gets.
fn open(file: &Path, shown: &str) -> Result<Connection, Error> {
    // Immutable: the file is part of the deployed code, so SQLite takes no locks and writes no
    // journal (the Micro's src is read-only anyway).
    let uri = format!(
        "file:{}?immutable=1",
        percent_encoding::utf8_percent_encode(&file.to_string_lossy(), URI_PATH)
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let not_a_database = |error: rusqlite::Error| {
        Error::NotFound(format!("`{shown}` is not a SQLite database: {error}"))
    };
    let connection = Connection::open_with_flags(uri, flags).map_err(not_a_database)?;
    // ATTACH would open any file the host can read; nothing else may be loaded either.
    connection
        .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(not_a_database)?;
    connection
        .set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_SQL_LENGTH,
            MAX_SQL_BYTES,
        )
        .map_err(not_a_database)?;
    connection
        .set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
            i32::try_from(MAX_RESULT_BYTES).unwrap_or(i32::MAX),
        )
        .map_err(not_a_database)?;
    connection
        .execute_batch(&format!(
            "PRAGMA query_only = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{CACHE_KIB}; PRAGMA hard_heap_limit = {HEAP_LIMIT};"
        ))
        .map_err(not_a_database)?;
    // Reading the schema proves the file is a database.
    connection
        .query_row("PRAGMA schema_version", [], |_| Ok(()))
        .map_err(not_a_database)?;
    Ok(connection)
}

/// Why a query gave no rows.
enum Stop {
    /// Refused, with the error the guest gets.
    Refused(Error),
    /// Stopped at the execution's deadline.
    Deadline,
}

/// Runs one read-only statement, stopped at `deadline`.
fn query(
    connection: &mut Connection,
    path: &str,
    sql: &str,
    params: Vec<Value>,
    deadline: Option<Instant>,
) -> Result<Rows, Stop> {
    if let Some(deadline) = deadline {
        // A query that cannot be stopped at the deadline does not run.
        connection
            .progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline))
            .map_err(|e| {
                Stop::Refused(Error::Invalid(format!(
                    "`{path}`: cannot watch the time limit: {e}"
                )))
            })?;
    }
    let result = run(connection, path, sql, params);
    // The next query sets its own; a stale one only stops a query of this same execution.
    let _ = connection.progress_handler(0, None::<fn() -> bool>);
    result
}

/// Prepares, checks and runs one statement.
fn run(connection: &Connection, path: &str, sql: &str, params: Vec<Value>) -> Result<Rows, Stop> {
    let refused = |error: Error| Stop::Refused(error);
    let mut statement = connection
        .prepare(sql)
        .map_err(|e| refused(Error::Invalid(format!("`{path}`: {e}"))))?;
    if !statement.readonly() {
        return Err(refused(Error::ReadOnly(format!(
            "`{path}` is bundled with the Micro and read-only: the statement would write"
        ))));
    }
    if statement.parameter_count() != params.len() {
        return Err(refused(Error::Invalid(format!(
            "`{path}`: the statement has {} parameters, {} were given",
            statement.parameter_count(),
            params.len()
        ))));
    }
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let values = params.into_iter().map(|value| match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
    });
    let rows = read_rows(&mut statement, rusqlite::params_from_iter(values), path)?;
    Ok(Rows { columns, rows })
}

/// Steps through the rows, converting and counting their bytes.
fn read_rows(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    path: &str,
) -> Result<Vec<Vec<Value>>, Stop> {
    let failed = |error: rusqlite::Error| match error.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => Stop::Deadline,
        Some(ErrorCode::ReadOnly) => Stop::Refused(Error::ReadOnly(format!(
            "`{path}` is bundled with the Micro and read-only: {error}"
        ))),
        Some(ErrorCode::OutOfMemory) => Stop::Refused(Error::TooLarge(format!(
            "`{path}`: the query needs more than SQLite's memory limit of {HEAP_LIMIT} bytes"
        ))),
        Some(ErrorCode::TooBig) => Stop::Refused(Error::TooLarge(format!(
            "`{path}`: a value is past the limit of {MAX_RESULT_BYTES} bytes"
        ))),
        _ => Stop::Refused(Error::Invalid(format!("`{path}`: {error}"))),
    };
    let count = statement.column_count();
    let mut cursor = statement.query(params).map_err(failed)?;
    let (mut rows, mut bytes) = (Vec::new(), 0u64);
    while let Some(row) = cursor.next().map_err(failed)? {
        let mut values = Vec::with_capacity(count);
        for index in 0..count {
            let value = row.get_ref(index).map_err(failed)?;
            bytes += match value {
                ValueRef::Text(t) | ValueRef::Blob(t) => t.len() as u64,
                _ => 8,
            };
            if bytes > MAX_RESULT_BYTES {
                return Err(Stop::Refused(Error::TooLarge(format!(
                    "`{path}`: the result is past the limit of {MAX_RESULT_BYTES} bytes; select fewer rows or columns (LIMIT)"
                ))));
            }
            values.push(match value {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(r) => Value::Real(r),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        rows.push(values);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of one table in a temporary folder, opened as a guest's would be.
    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .and_then(|db| db.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);"))
            .expect("database");
        let connection = open(&path, "t.db")
            .map_err(|e| format!("{e:?}"))
            .expect("open");
        (dir, connection)
    }

    #[test]
    fn a_query_past_the_deadline_is_stopped_by_sqlite_itself() {
        let (_dir, mut connection) = database();
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT count(*) FROM c";
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(200);
        let stopped = query(&mut connection, "t.db", endless, Vec::new(), Some(deadline));
        assert!(matches!(stopped, Err(Stop::Deadline)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // The handler is gone after the query: the next one runs to its end.
        let rows = query(&mut connection, "t.db", "SELECT x FROM t", Vec::new(), None)
            .map_err(|_| "refused")
            .expect("a query after the stopped one");
        assert_eq!(rows.rows.len(), 1);
    }

    #[test]
    fn heap_limit_obeyed_and_violated() {
        let (_dir, mut connection) = database();
        // Sorting rows of ~110 bytes in memory: 300,000 of them fit in the limit, 3,000,000 not.
        let mut sort = |rows: i64| {
            query(
                &mut connection,
                "t.db",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) \
                 SELECT count(*) FROM (SELECT x, randomblob(100) AS b FROM c ORDER BY b)",
                vec![Value::Integer(rows)],
                None,
            )
        };
        match sort(300_000) {
            Ok(rows) => assert!(matches!(rows.rows[0][0], Value::Integer(300_000))),
            Err(_) => panic!("a sort within the heap limit was refused"),
        }
        match sort(3_000_000) {
            Err(Stop::Refused(Error::TooLarge(message))) => assert_eq!(
                message,
                "`t.db`: the query needs more than SQLite's memory limit of 268435456 bytes"
            ),
            _ => panic!("a sort past the heap limit was not refused"),
        }
    }

    #[test]
    fn paths_resolve_under_src_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("root");
        std::fs::create_dir(root.join("d")).expect("folder");
        std::fs::write(root.join("d/a.db"), b"").expect("file");
        for path in ["/d/a.db", "d/a.db", "./d/a.db", "/d/./a.db", "//d/a.db"] {
            assert_eq!(
                resolve(&root, path).ok(),
                Some(root.join("d/a.db")),
                "{path}"
            );
        }
        for path in ["../x", "/d/../d/a.db", "tmp/a.db", "/tmp"] {
            assert!(
                matches!(resolve(&root, path), Err(Error::OutsideSrc(_))),
                "{path}"
            );
        }
    }
}
