//! Read-only SQLite over databases bundled in a Micro's src (`wit/sqlite.wit`), from a real
//! guest: typed rows and parameters, writes refused, paths outside src refused, the time limit
//! and the caps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use micros_guests as guests;

use crate::limits::{assert_error, assert_healthy};
use crate::support::{micro, serve, serve_with, short_limits, write_app};

/// A small database: a table of notes with every column type, as bytes of a SQLite file.
fn notes_db() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT, score REAL, data BLOB, gone TEXT);
         INSERT INTO notes VALUES (1, 'first', 1.5, x'01ff', NULL);
         INSERT INTO notes VALUES (2, 'second', 2.25, x'', NULL);
         INSERT INTO notes VALUES (3, 'third', -3.0, NULL, 'x');",
    )
    .unwrap();
    drop(db);
    std::fs::read(path).unwrap()
}

/// The `sqlite` guest with `notes.db` bundled at `data/notes.db`, beside `hello`.
fn micros() -> Vec<crate::support::MicroSpec> {
    vec![
        micro("web", guests::SQLITE)
            .primary()
            .file("data/notes.db", &notes_db())
            .file("data/readme.txt", b"not a database"),
        micro("hello", guests::HELLO).path("/hello"),
    ]
}

#[tokio::test]
async fn sqlite_queries_a_bundled_database_with_typed_rows_and_parameters() {
    let server = serve(&micros()).await;
    let reply = server
        .post(
            "/",
            "/data/notes.db\nSELECT id, title, score, data, gone FROM notes WHERE id >= ? AND title != ? ORDER BY id\ni:1\nt:second\n",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        "id\ttitle\tscore\tdata\tgone\n\
         i:1\tt:first\tr:1.5\tb:01ff\tn\n\
         i:3\tt:third\tr:-3\tn\tt:x\n"
    );
    // A relative path is from the root of src too; blobs and reals go in as parameters.
    let reply = server
        .post(
            "/",
            "data/notes.db\nSELECT ? AS b, ? AS r, ? AS z\nb:68656c6c6f\nr:0.5\nn\n",
        )
        .await;
    assert_eq!(reply.text(), "b\tr\tz\nb:68656c6c6f\tr:0.5\tn\n");
}

#[tokio::test]
async fn sqlite_refuses_every_write() {
    let server = serve(&micros()).await;
    for sql in [
        "INSERT INTO notes (title) VALUES ('new')",
        "UPDATE notes SET title = 'changed'",
        "DELETE FROM notes",
        "CREATE TABLE more (x)",
        "DROP TABLE notes",
        "VACUUM",
    ] {
        let reply = server.post("/", format!("/data/notes.db\n{sql}\n")).await;
        assert_eq!(reply.status, 422, "{sql}");
        assert_eq!(
            reply.text(),
            "read-only: `/data/notes.db` is bundled with the Micro and read-only: the statement would write\n",
            "{sql}"
        );
    }
    // ATTACH would open another file of the host: refused before it runs.
    let reply = server
        .post(
            "/",
            "/data/notes.db\nATTACH DATABASE '/etc/passwd' AS host\n",
        )
        .await;
    assert_eq!(reply.status, 422);
    assert!(
        reply
            .text()
            .starts_with("invalid: `/data/notes.db`: too many attached databases"),
        "{}",
        reply.text()
    );
    // Nothing was written.
    let reply = server
        .post("/", "/data/notes.db\nSELECT count(*) AS n FROM notes\n")
        .await;
    assert_eq!(reply.text(), "n\ni:3\n");
}

#[tokio::test]
async fn sqlite_refuses_paths_outside_src() {
    let server = serve(&micros()).await;
    for (path, text) in [
        (
            "../hello/micro.wasm",
            "outside-src: `../hello/micro.wasm`: `..` is not allowed; name a file under the Micro's src\n",
        ),
        (
            "/data/../../hello/micro.wasm",
            "outside-src: `/data/../../hello/micro.wasm`: `..` is not allowed; name a file under the Micro's src\n",
        ),
        (
            "/tmp/notes.db",
            "outside-src: `/tmp/notes.db` is under /tmp: only databases bundled in the Micro's src can be opened\n",
        ),
        (
            "/data/missing.db",
            "not-found: `/data/missing.db`: no such file in the Micro's src\n",
        ),
        ("/data", "not-found: `/data` is not a file\n"),
        ("/", "not-found: `/` names no file\n"),
    ] {
        let reply = server.post("/", format!("{path}\nSELECT 1\n")).await;
        assert_eq!(reply.status, 422, "{path}");
        assert_eq!(reply.text(), text, "{path}");
    }
    let reply = server.post("/", "/data/readme.txt\nSELECT 1\n").await;
    assert_eq!(reply.status, 422);
    assert!(
        reply
            .text()
            .starts_with("not-found: `/data/readme.txt` is not a SQLite database: "),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn sqlite_refuses_a_symlink_out_of_src() {
    let (dir, manifest) = write_app(&micros());
    let outside = dir.path().join("outside.db");
    std::fs::write(&outside, notes_db()).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("web/data/link.db")).unwrap();
    let app = crate::support::load_open(&manifest);
    let reply = app
        .handle(
            http::Request::post("/")
                .header("host", "x")
                .body(Full::new(Bytes::from("/data/link.db\nSELECT 1\n")))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 422);
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        "outside-src: `/data/link.db` leads out of the Micro's src (a symbolic link?)\n"
    );
}

#[tokio::test]
async fn sqlite_bad_sql_and_parameters_are_named() {
    let server = serve(&micros()).await;
    let reply = server.post("/", "/data/notes.db\nSELEC 1\n").await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.text().starts_with("invalid: `/data/notes.db`: ")
            && reply.text().contains("syntax error"),
        "{}",
        reply.text()
    );
    let reply = server
        .post("/", "/data/notes.db\nSELECT * FROM notes WHERE id = ?\n")
        .await;
    assert_eq!(
        reply.text(),
        "invalid: `/data/notes.db`: the statement has 1 parameters, 0 were given\n"
    );
}

#[tokio::test]
async fn sqlite_open_databases_limit_obeyed_and_violated() {
    let server = serve(&micros()).await;
    // Seven held and one more for the query: eight, the limit.
    let reply = server
        .post(
            &format!("/?open={}", micros::sqlite::MAX_OPEN_DATABASES - 1),
            "/data/notes.db\nSELECT 1 AS one\n",
        )
        .await;
    assert_eq!(reply.text(), "one\ni:1\n");
    let reply = server
        .post(
            &format!("/?open={}", micros::sqlite::MAX_OPEN_DATABASES),
            "/data/notes.db\nSELECT 1 AS one\n",
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        "too-many-open: 8 databases are already open in this execution: drop one first\n"
    );
}

#[tokio::test]
async fn sqlite_result_size_limit_obeyed_and_violated() {
    let server = serve(&micros()).await;
    let cap = micros::sqlite::MAX_RESULT_BYTES;
    // One value of exactly the cap passes; one byte more is refused.
    let reply = server
        .post(
            "/?summary",
            format!("/data/notes.db\nSELECT zeroblob(?)\ni:{cap}\n"),
        )
        .await;
    assert_eq!(reply.text(), "rows=1\n");
    let reply = server
        .post(
            "/?summary",
            format!("/data/notes.db\nSELECT zeroblob(?)\ni:{}\n", cap + 1),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        format!("too-large: `/data/notes.db`: a value is past the limit of {cap} bytes\n")
    );
    // Many small values count together: 8 bytes each.
    let count = |rows: u64| {
        format!(
            "/data/notes.db\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) SELECT x FROM c\ni:{rows}\n"
        )
    };
    let reply = server.post("/?summary", count(cap / 8)).await;
    assert_eq!(reply.text(), format!("rows={}\n", cap / 8));
    let reply = server.post("/?summary", count(cap / 8 + 1)).await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.text(),
        format!(
            "too-large: `/data/notes.db`: the result is past the limit of {cap} bytes; select fewer rows or columns (LIMIT)\n"
        )
    );
    assert_healthy(&server).await;
}

#[tokio::test]
async fn sqlite_time_limit_obeyed_and_violated() {
    let server = serve_with(&micros(), short_limits(Duration::from_secs(1)), Vec::new()).await;
    // A query that ends well within the limit.
    let reply = server
        .post(
            "/",
            "/data/notes.db\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000) SELECT count(*) AS n FROM c\n",
        )
        .await;
    assert_eq!(reply.text(), "n\ni:1000\n");
    // One that never ends is stopped at the limit, as any execution is.
    let started = Instant::now();
    let reply = server
        .post(
            "/",
            "/data/notes.db\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c\n",
        )
        .await;
    assert_error(
        &reply,
        504,
        "micro `web`: execution time limit of 1s exceeded\n",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_healthy(&server).await;
}
