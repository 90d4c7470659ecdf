//! The `/tmp` quota, obeyed and violated on every write path: streams, appends, writes at an
//! offset, sparse sizes, file counts, unlinked-but-open files, renames, links and symlinks, and
//! concurrent executions sharing one Micro's books.

use std::path::Path;

use micros::Limits;
use micros_guests as guests;

use crate::support::{Server, micro, serve_with};

const MIB: u64 = 1024 * 1024;

/// The `tmpfill` guest as the primary Micro (with 2 MiB of zeros bundled to splice from),
/// beside a benign one, with a small `/tmp`.
async fn tmpfill(bytes: u64, entries: u64) -> Server {
    let limits = Limits {
        tmp_bytes: bytes,
        tmp_entries: entries,
        ..Limits::default()
    };
    serve_with(
        &[
            micro("web", guests::TMPFILL)
                .primary()
                .file("zeros.bin", &[0; 2 << 20]),
            micro("hello", guests::HELLO).path("/hello"),
        ],
        limits,
        vec![],
    )
    .await
}

/// Asserts each `(path, answer)` in turn.
async fn steps(server: &Server, steps: &[(&str, &str)]) {
    for (path, answer) in steps {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), *answer, "{path}");
    }
}

/// Bytes of file data under `dir` on the host, by logical size.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                disk_bytes(&entry.path())
            } else if meta.is_file() {
                meta.len()
            } else {
                0
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_bytes_obeyed() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[
            ("/fill?name=a&bytes=1048576", "wrote 1048576: ok"),
            // Creating a file anew truncates it: its bytes are given back first.
            ("/fill?name=a&bytes=1048576", "wrote 1048576: ok"),
            ("/rm?name=a", "ok"),
            ("/append?name=b&bytes=524288", "wrote 524288: ok"),
            ("/append?name=b&bytes=524288", "wrote 524288: ok"),
            ("/read?name=b", "1048576 bytes"),
        ],
    )
    .await;
    assert_eq!(disk_bytes(&server.tmp_dir("web")), MIB);
    assert_eq!(server.get("/hello/").await.text(), "hello from micros\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_bytes_violated() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[
            // A stream: everything up to the limit lands, the byte past it fails, nothing more.
            // The host answers `insufficient-space`; Rust's std (wasi-libc) does not ask for the
            // code of a failed stream write and reports an uncategorized error.
            (
                "/rawfill?name=a&bytes=2000000",
                "wrote 1048576: insufficient-space",
            ),
            ("/rm?name=a", "ok"),
            (
                "/fill?name=a&bytes=1048577",
                "wrote 1048576: InputOutputError",
            ),
            ("/fill?name=b&bytes=1", "wrote 0: InputOutputError"),
            ("/append?name=a&bytes=1", "wrote 0: InputOutputError"),
            // A write through the descriptor at an offset past the limit, and a sparse size:
            // the hole counts, so neither gets round the quota.
            (
                "/pwrite?name=a&offset=1048576&bytes=1",
                "insufficient-space",
            ),
            (
                "/pwrite?name=c&offset=4294967296&bytes=1",
                "insufficient-space",
            ),
            ("/sparse?name=a&len=1048577", "StorageFull"),
            // Deleting gives the room back.
            ("/rm?name=a", "ok"),
            ("/sparse?name=c&len=1048577", "StorageFull"),
            ("/sparse?name=c&len=1048576", "ok"),
            ("/sparse?name=c&len=0", "ok"),
            ("/pwrite?name=c&offset=1048575&bytes=1", "ok"),
        ],
    )
    .await;
    assert_eq!(disk_bytes(&server.tmp_dir("web")), MIB);
    assert_eq!(server.get("/hello/").await.text(), "hello from micros\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_every_way_to_write_a_stream_is_counted() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[
            (
                "/rawfill?name=a&bytes=2000000",
                "wrote 1048576: insufficient-space",
            ),
            ("/rm?name=a", "ok"),
            (
                "/rawfill?name=a&bytes=2000000&how=zeroes",
                "wrote 1048576: insufficient-space",
            ),
            ("/rm?name=a", "ok"),
            (
                "/rawfill?name=a&bytes=2000000&how=splice",
                "wrote 1048576: insufficient-space",
            ),
        ],
    )
    .await;
    assert_eq!(disk_bytes(&server.tmp_dir("web")), MIB);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_default_is_512_mib() {
    let server = tmpfill(micros::config::DEFAULT_TMP_BYTES, 100).await;
    steps(
        &server,
        &[
            ("/sparse?name=s&len=536870912", "ok"),
            ("/sparse?name=t&len=1", "StorageFull"),
            (
                "/pwrite?name=s&offset=536870912&bytes=1",
                "insufficient-space",
            ),
            ("/sparse?name=s&len=536870911", "ok"),
            ("/sparse?name=t&len=1", "ok"),
        ],
    )
    .await;
    assert_eq!(Limits::default().tmp_bytes, 512 * MIB);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_entries_obeyed_and_violated() {
    let server = tmpfill(MIB, 16).await;
    steps(
        &server,
        &[
            ("/count?prefix=f&n=100", "made 16: StorageFull"),
            ("/count?prefix=d&n=1&dirs=1", "made 0: StorageFull"),
            ("/symlink?target=f0&name=l", "insufficient-space"),
            ("/link?from=f0&to=g", "StorageFull"),
            // Opening an existing file creates nothing.
            ("/fill?name=f0&bytes=10", "wrote 10: ok"),
            ("/rm?name=f0", "ok"),
            ("/count?prefix=d&n=1&dirs=1", "made 1: ok"),
            ("/rmdir?name=d0", "ok"),
            ("/count?prefix=f&n=1", "made 1: ok"),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read_dir(server.tmp_dir("web")).unwrap().count(),
        16
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_unlinked_open_file_counts_until_closed() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[(
            "/orphan?bytes=600000",
            "wrote 600000: ok; unlink: ok; while open: InputOutputError; after close: ok",
        )],
    )
    .await;
    assert_eq!(disk_bytes(&server.tmp_dir("web")), 600_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_renames_and_links_keep_the_books() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[
            // Renaming over a file frees the file it replaces.
            ("/fill?name=a&bytes=500000", "wrote 500000: ok"),
            ("/fill?name=b&bytes=400000", "wrote 400000: ok"),
            ("/rename?from=a&to=b", "ok"),
            ("/fill?name=c&bytes=500000", "wrote 500000: ok"),
            ("/read?name=b", "500000 bytes"),
            ("/rm?name=b", "ok"),
            ("/rm?name=c", "ok"),
            // A hard link is one file: its bytes count once, and only its last name frees them.
            ("/fill?name=a&bytes=600000", "wrote 600000: ok"),
            ("/link?from=a&to=a2", "ok"),
            ("/fill?name=b&bytes=400000", "wrote 400000: ok"),
            ("/rm?name=a", "ok"),
            ("/fill?name=c&bytes=100000", "wrote 0: InputOutputError"),
            ("/rm?name=a2", "ok"),
            ("/fill?name=c&bytes=600000", "wrote 600000: ok"),
        ],
    )
    .await;
    assert_eq!(disk_bytes(&server.tmp_dir("web")), 1_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_symlinks_cannot_point_out() {
    let server = tmpfill(MIB, 100).await;
    steps(
        &server,
        &[
            ("/symlink?target=/etc/passwd&name=l", "not-permitted"),
            ("/symlink?target=../keys.toml&name=l", "not-permitted"),
            ("/symlink?target=sub/../../x&name=l", "not-permitted"),
            ("/fill?name=a&bytes=5", "wrote 5: ok"),
            ("/symlink?target=a&name=l", "ok"),
            ("/read?name=l", "5 bytes"),
            // Writing through a link counts against the file it reaches.
            ("/fill?name=l&bytes=1048576", "wrote 1048576: ok"),
            ("/fill?name=b&bytes=1", "wrote 0: InputOutputError"),
        ],
    )
    .await;
    let tmp = server.tmp_dir("web");
    assert_eq!(std::fs::read_link(tmp.join("l")).unwrap(), Path::new("a"));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 3, "a, l and b");
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_quota_is_shared_by_concurrent_executions() {
    let server = tmpfill(MIB, 100).await;
    let paths: Vec<String> = (0..8)
        .map(|i| format!("/fill?name=c{i}&bytes=300000"))
        .collect();
    let fills = paths.iter().map(|path| server.get(path));
    let answers: Vec<String> = futures::future::join_all(fills)
        .await
        .into_iter()
        .map(|reply| reply.text())
        .collect();
    // At most three whole fills fit; how many finish depends on how the writes interleave
    // (when all eight advance together, each is refused part way and none finishes).
    let whole = answers.iter().filter(|a| *a == "wrote 300000: ok").count();
    assert!(whole <= 3, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|a| a.ends_with(": ok") || a.ends_with(": InputOutputError"))
    );
    assert!(disk_bytes(&server.tmp_dir("web")) <= MIB);
    // Emptied, the books are back at zero: the whole quota fits again.
    for i in 0..8 {
        server.get(&format!("/rm?name=c{i}")).await;
    }
    steps(
        &server,
        &[("/fill?name=all&bytes=1048576", "wrote 1048576: ok")],
    )
    .await;
}
