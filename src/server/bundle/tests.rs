//! The bundle's tests: apps packed and unpacked, and hostile archives refused, each with nothing
//! left behind.

use std::collections::BTreeMap;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::EntryType;

use super::unpack::{Limits, unpack_with};
use super::*;
use crate::spec::manifest::Manifest;

/// The manifest of the test app: one Micro, `web`, built under `target/`.
const SPACEFILE: &str = "v = 1\napp_name = \"test\"\n\n[[micros]]\nname = \"web\"\nsrc = \"web\"\ncomponent = \"target/wasm32-wasip2/release/web.wasm\"\n";
/// Where the test app's component is, from the app folder.
const COMPONENT: &str = "web/target/wasm32-wasip2/release/web.wasm";

/// Writes `contents` at `path` under `dir`, making the folders above it.
fn write(dir: &Path, path: &str, contents: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, contents).unwrap();
}

/// Writes the test app's manifest and component into `dir`, and loads the manifest.
fn write_app(dir: &Path) -> Manifest {
    write(dir, "Spacefile.toml", SPACEFILE);
    write(dir, COMPONENT, "\0asm, not really");
    Manifest::load(dir).unwrap()
}

/// Every file and folder under `dir`, by path from it: a file's contents, `None` for a folder.
fn tree(dir: &Path) -> BTreeMap<String, Option<String>> {
    let mut found = BTreeMap::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for item in std::fs::read_dir(folder).unwrap() {
            let path = item.unwrap().path();
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                found.insert(name, None);
                folders.push(path);
            } else {
                found.insert(name, Some(std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    found
}

/// Packs the app of `manifest` and unpacks it into a fresh folder: the folder's tree.
fn round_trip(manifest: &Manifest) -> (BTreeMap<String, Option<String>>, Unpacked) {
    let bundle = pack(manifest).unwrap();
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("release");
    let unpacked = unpack(&bundle[..], &into).unwrap();
    (tree(&into), unpacked)
}

#[test]
fn an_app_unpacks_to_the_files_it_was_packed_from() {
    let app = tempfile::tempdir().unwrap();
    let manifest = write_app(app.path());
    write(app.path(), "web/src/main.rs", "fn main() {}");
    // Longer than a tar header's 100 bytes: packed with a GNU long name.
    let long = format!("web/static/{}/index.html", "deep".repeat(30));
    write(app.path(), &long, "<h1>hi</h1>");
    let (unpacked_tree, unpacked) = round_trip(&manifest);
    let packed_tree = tree(app.path());
    assert_eq!(unpacked_tree, packed_tree);
    let bytes = packed_tree.values().flatten().map(|c| c.len() as u64).sum();
    assert_eq!(
        unpacked,
        Unpacked {
            entries: packed_tree.len(),
            bytes
        }
    );
}

#[test]
fn pack_leaves_out_the_ignored_but_keeps_the_component() {
    let app = tempfile::tempdir().unwrap();
    let manifest = write_app(app.path());
    for (path, contents) in [
        ("web/src/main.rs", "fn main() {}"),
        ("web/static/app.log", "ignored by name, at any depth"),
        ("web/static/index.html", "<h1>hi</h1>"),
        ("web/drafts/plan.md", "ignored by path"),
        (
            "web/static/web/drafts/plan.md",
            "kept: the path is from the app folder",
        ),
        ("web/keep.log", "brought back"),
        ("web/target/debug/junk", "built"),
        ("web/node_modules/x/index.js", "installed"),
        ("web/.git/HEAD", "ref: refs/heads/main"),
        ("web/.micros/keys.toml", "secret"),
        ("web/__pycache__/a.pyc", "compiled"),
        ("web/.venv/bin/python", "installed"),
        ("web/.tools/componentize", "installed"),
        ("README.md", "in no Micro's src"),
        (IGNORE_FILE, "# logs\n*.log\n!keep.log\n\nweb/drafts/\n"),
    ] {
        write(app.path(), path, contents);
    }
    let (unpacked, _) = round_trip(&manifest);
    let paths: Vec<&str> = unpacked.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "Spacefile.toml",
            "web",
            "web/keep.log",
            "web/src",
            "web/src/main.rs",
            "web/static",
            "web/static/index.html",
            "web/static/web",
            "web/static/web/drafts",
            "web/static/web/drafts/plan.md",
            "web/target",
            "web/target/wasm32-wasip2",
            "web/target/wasm32-wasip2/release",
            COMPONENT,
        ]
    );
}

#[test]
fn the_same_app_packs_to_the_same_bytes() {
    let app = tempfile::tempdir().unwrap();
    let manifest = write_app(app.path());
    write(app.path(), "web/b.txt", "b");
    write(app.path(), "web/a/c.txt", "c");
    let first = pack(&manifest).unwrap();
    let file = std::fs::File::options()
        .write(true)
        .open(app.path().join("web/b.txt"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(pack(&manifest).unwrap(), first);
}

#[cfg(unix)]
#[test]
fn pack_refuses_a_symlink_naming_it() {
    let app = tempfile::tempdir().unwrap();
    let manifest = write_app(app.path());
    std::os::unix::fs::symlink("/etc/passwd", app.path().join("web/passwd")).unwrap();
    let error = format!("{:#}", pack(&manifest).unwrap_err());
    let link = app.path().join("web/passwd");
    assert!(
        error.starts_with(&format!(
            "`{}` is a symlink, which a bundle cannot hold",
            link.display()
        )),
        "{error}"
    );
}

#[test]
fn pack_refuses_an_app_without_its_component() {
    let app = tempfile::tempdir().unwrap();
    let manifest = write_app(app.path());
    std::fs::remove_file(app.path().join(COMPONENT)).unwrap();
    let error = format!("{:#}", pack(&manifest).unwrap_err());
    assert!(
        error.starts_with("cannot bundle the component of the Micro `web`"),
        "{error}"
    );
}

/// A tar header for `name`, written as raw bytes (the tar crate refuses `..` and absolute
/// paths), of type `kind` and `size` bytes, mode 0644.
fn header(name: &[u8], kind: EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.as_mut_bytes()[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    header
}

/// An entry of a hand-made bundle: raw name, type and contents.
type Entry<'a> = (&'a [u8], EntryType, &'a [u8]);

/// The top `Spacefile.toml` every bundle needs.
const TOP: Entry<'static> = (b"Spacefile.toml", EntryType::Regular, b"v = 1\n");

/// The tar of `entries`, not compressed.
fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(name, kind, data) in entries {
        builder
            .append(&header(name, kind, data.len() as u64), data)
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// `data` gzip'd.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    std::io::Write::write_all(&mut encoder, data).unwrap();
    encoder.finish().unwrap()
}

/// The gzip'd tar of `entries`.
fn bundle(entries: &[Entry<'_>]) -> Vec<u8> {
    gzip(&tar(entries))
}

/// `len` bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Unpacks `bundle` under `limits` into a new folder: the refusal's text, once checked that
/// nothing was left there or beside it.
fn refused_with(bundle: &[u8], limits: Limits) -> String {
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("release");
    let error = unpack_with(bundle, &into, limits).unwrap_err();
    assert!(!into.exists(), "{error}: `into` was left");
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(left.is_empty(), "{error}: {left:?} was left beside `into`");
    error.to_string()
}

/// [`refused_with`] under the real limits.
fn refused(bundle: &[u8]) -> String {
    refused_with(bundle, Limits::DEFAULT)
}

#[test]
fn a_bundle_made_by_hand_unpacks_with_its_top_folder_and_dot_slashes() {
    let bundle = bundle(&[
        (b"./", EntryType::Directory, b""),
        (b"./Spacefile.toml", EntryType::Regular, b"v = 1\n"),
        (b"./web//a.txt", EntryType::Regular, b"a"),
        (b"./web/", EntryType::Directory, b""),
    ]);
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("release");
    let unpacked = unpack(&bundle[..], &into).unwrap();
    assert_eq!(
        unpacked,
        Unpacked {
            entries: 3,
            bytes: 7
        }
    );
    assert_eq!(
        tree(&into).into_iter().collect::<Vec<_>>(),
        [
            ("Spacefile.toml".to_string(), Some("v = 1\n".to_string())),
            ("web".to_string(), None),
            ("web/a.txt".to_string(), Some("a".to_string())),
        ]
    );
}

#[cfg(unix)]
#[test]
fn files_are_written_0644_and_folders_0755_whatever_the_archive_says() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut setuid = header(b"web/run", EntryType::Regular, 2);
    setuid.set_mode(0o4777);
    setuid.set_cksum();
    let mut private = header(b"web/", EntryType::Directory, 0);
    private.set_mode(0o700);
    private.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header(TOP.0, TOP.1, 6), TOP.2).unwrap();
    builder.append(&private, &b""[..]).unwrap();
    builder.append(&setuid, &b"#!"[..]).unwrap();
    let bundle = gzip(&builder.into_inner().unwrap());
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("release");
    unpack(&bundle[..], &into).unwrap();
    let mode = |path: &str| {
        std::fs::metadata(into.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(""), 0o755);
    assert_eq!(mode("web"), 0o755);
    assert_eq!(mode("web/run"), 0o644);
    assert_eq!(mode("Spacefile.toml"), 0o644);
}

#[test]
fn unpack_refuses_a_folder_that_exists() {
    let out = tempfile::tempdir().unwrap();
    let into = out.path().join("release");
    std::fs::create_dir(&into).unwrap();
    let error = unpack(&bundle(&[TOP])[..], &into).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "bundle: cannot unpack into `{}`: it already exists; unpack into a new folder",
            into.display()
        )
    );
    assert_eq!(std::fs::read_dir(&into).unwrap().count(), 0);
}

/// What anything but a gzip'd tar gets.
const NOT_A_BUNDLE: &str =
    "bundle: the upload is not a gzip'd tar; make bundles with `micros push`";

#[test]
fn refuses_what_is_not_gzip() {
    assert_eq!(refused(b"PK\x03\x04 a zip file"), NOT_A_BUNDLE);
    assert_eq!(refused(b""), NOT_A_BUNDLE);
    assert_eq!(refused(&tar(&[TOP])), NOT_A_BUNDLE);
}

#[test]
fn refuses_a_gzip_that_is_not_a_tar() {
    assert_eq!(refused(&gzip(b"hello, not a tar")), NOT_A_BUNDLE);
    assert_eq!(refused(&gzip(&[b'x'; 2048])), NOT_A_BUNDLE);
}

#[test]
fn refuses_a_truncated_bundle() {
    let data = noise(100_000);
    let whole = bundle(&[TOP, (b"data", EntryType::Regular, &data)]);
    // Cut in the gzip stream, and in the tar inside a whole gzip stream.
    let cut_gzip = &whole[..whole.len() / 2];
    let whole_tar = tar(&[TOP, (b"data", EntryType::Regular, &data)]);
    let cut_tar = gzip(&whole_tar[..whole_tar.len() / 2]);
    for cut in [cut_gzip, &cut_tar] {
        assert_eq!(
            refused(cut),
            "bundle entry `data`: the bundle ends in the middle of an entry; upload it again, whole"
        );
    }
    // Cut right after an entry: the tar looks whole, the gzip trailer is missing.
    let short = bundle(&[TOP]);
    assert_eq!(
        refused(&short[..short.len() - 4]),
        "bundle: the bundle ends in the middle of an entry; upload it again, whole"
    );
}

#[test]
fn refuses_a_bundle_whose_checksum_does_not_match() {
    let mut bundle = bundle(&[TOP]);
    let crc = bundle.len() - 8;
    bundle[crc] ^= 0xff;
    let error = refused(&bundle);
    assert!(
        error.starts_with("bundle: the bundle is corrupt ("),
        "{error}"
    );
}

#[test]
fn refuses_a_path_with_dot_dot() {
    for name in [&b"../evil"[..], b"web/../../evil", b"web/.."] {
        let error = refused(&bundle(&[TOP, (name, EntryType::Regular, b"x")]));
        assert_eq!(
            error,
            format!(
                "bundle entry `{}`: a path with `..`; paths in a bundle stay inside the app's folder",
                String::from_utf8_lossy(name)
            )
        );
    }
}

#[test]
fn refuses_an_absolute_path() {
    assert_eq!(
        refused(&bundle(&[
            TOP,
            (b"/etc/cron.d/evil", EntryType::Regular, b"x")
        ])),
        "bundle entry `/etc/cron.d/evil`: an absolute path; paths in a bundle are relative to the app's folder"
    );
}

#[test]
fn refuses_a_path_that_is_not_utf8_or_a_file_with_no_name() {
    assert_eq!(
        refused(&bundle(&[TOP, (b"caf\xe9", EntryType::Regular, b"x")])),
        "bundle entry `caf\u{fffd}`: a path that is not UTF-8; rename the file"
    );
    assert_eq!(
        refused(&bundle(&[TOP, (b"./", EntryType::Regular, b"x")])),
        "bundle entry `./`: an empty path; every file needs a name"
    );
}

#[test]
fn refuses_links_devices_and_fifos() {
    for (kind, name) in [
        (EntryType::Symlink, "a symlink"),
        (EntryType::Link, "a hard link"),
        (EntryType::Char, "a character device"),
        (EntryType::Block, "a block device"),
        (EntryType::Fifo, "a fifo"),
        (EntryType::XGlobalHeader, "an entry of type `g`"),
    ] {
        let mut special = header(b"web/special", kind, 0);
        special.set_link_name("/etc/passwd").unwrap();
        special.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header(TOP.0, TOP.1, 6), TOP.2).unwrap();
        builder.append(&special, &b""[..]).unwrap();
        assert_eq!(
            refused(&gzip(&builder.into_inner().unwrap())),
            format!("bundle entry `web/special`: {name}; only files and folders may be bundled")
        );
    }
}

#[test]
fn refuses_the_same_path_twice() {
    assert_eq!(
        refused(&bundle(&[
            TOP,
            (b"web/a", EntryType::Regular, b"1"),
            (b"./web//a", EntryType::Regular, b"2"),
        ])),
        "bundle entry `./web//a`: the same path twice; bundle each file once"
    );
    assert_eq!(
        refused(&bundle(&[
            TOP,
            (b"web/a", EntryType::Regular, b"1"),
            (b"web/a/b", EntryType::Regular, b"2"),
        ])),
        "bundle entry `web/a/b`: inside `web/a`, which the bundle holds as a file; bundle each path once, as a file or a folder"
    );
    assert_eq!(
        refused(&bundle(&[
            TOP,
            (b"web/a/b", EntryType::Regular, b"1"),
            (b"web/a", EntryType::Regular, b"2"),
        ])),
        "bundle entry `web/a`: a file where the bundle holds a folder; bundle each path once, as a file or a folder"
    );
}

/// The real limits but for `entries` and `bytes`.
fn limits(entries: usize, bytes: u64) -> Limits {
    Limits {
        entries,
        bytes,
        ..Limits::DEFAULT
    }
}

#[test]
fn refuses_too_many_entries_the_folders_a_path_implies_included() {
    let three = [
        TOP,
        (b"a", EntryType::Regular, b""),
        (b"b/", EntryType::Directory, b""),
    ];
    let out = tempfile::tempdir().unwrap();
    let unpacked = unpack_with(&bundle(&three)[..], &out.path().join("ok"), limits(3, 100));
    assert_eq!(unpacked.unwrap().entries, 3);
    let mut four = three.to_vec();
    four.push((b"c", EntryType::Regular, b""));
    assert_eq!(
        refused_with(&bundle(&four), limits(3, 100)),
        "bundle entry `c`: the bundle holds more than 3 files and folders; leave out what the Micros do not need in `.spaceignore`"
    );
    assert_eq!(
        refused_with(
            &bundle(&[TOP, (b"a/b/c", EntryType::Regular, b"")]),
            limits(3, 100)
        ),
        "bundle entry `a/b/c`: the bundle holds more than 3 files and folders; leave out what the Micros do not need in `.spaceignore`"
    );
}

#[test]
fn refuses_too_many_bytes() {
    let block = [b'x'; 600];
    let entries = [
        TOP,
        (b"a", EntryType::Regular, &block[..]),
        (b"b", EntryType::Regular, &block[..]),
    ];
    assert_eq!(
        refused_with(&bundle(&entries), limits(100, 1000)),
        "bundle entry `b`: the bundle unpacks to more than 1000 bytes; leave out what the Micros do not need in `.spaceignore`"
    );
}

#[test]
fn refuses_a_decompression_bomb() {
    // 50 MB of zeros, some 50 KB gzip'd: a ratio of about 1000.
    let zeros = vec![0; 50_000_000];
    let bomb = bundle(&[TOP, (b"zeros", EntryType::Regular, &zeros)]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    // Refused while it streams: the rest of the upload is never read.
    let mut upload = &bomb[..];
    let error = unpack(
        &mut upload,
        &tempfile::tempdir().unwrap().path().join("release"),
    );
    assert!(error.is_err() && !upload.is_empty(), "{}", upload.len());
    assert_eq!(
        refused(&bomb),
        "bundle entry `zeros`: the bundle unpacks to more than 200 times its compressed size, like a decompression bomb; leave such files out, or compress them in the app"
    );
    // Under the first MiB, a bundle may compress as well as it likes.
    let out = tempfile::tempdir().unwrap();
    let small = bundle(&[TOP, (b"zeros", EntryType::Regular, &zeros[..900_000])]);
    assert!(unpack(&small[..], &out.path().join("ok")).is_ok());
}

#[test]
fn refuses_an_oversized_header_and_what_follows_the_archive() {
    let lenient = Limits {
        ratio: 1_000_000,
        ..Limits::DEFAULT
    };
    let long_name = vec![b'a'; 2 * 1024 * 1024];
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header(TOP.0, TOP.1, 6), TOP.2).unwrap();
    let long = header(
        b"././@LongLink",
        EntryType::GNULongName,
        long_name.len() as u64,
    );
    builder.append(&long, &long_name[..]).unwrap();
    builder
        .append(&header(b"short", EntryType::Regular, 0), &b""[..])
        .unwrap();
    assert_eq!(
        refused_with(&gzip(&builder.into_inner().unwrap()), lenient),
        "bundle: an entry's header takes more than 1048576 bytes; make bundles with `micros push`"
    );
    let mut trailing = tar(&[TOP]);
    trailing.extend(vec![0; 2 * 1024 * 1024]);
    assert_eq!(
        refused_with(&gzip(&trailing), lenient),
        "bundle: more than 1048576 bytes follow the end of the archive; make bundles with `micros push`"
    );
}

#[test]
fn refuses_a_bundle_without_spacefile_at_its_top() {
    let expected =
        "bundle: a bundle holds an app: `Spacefile.toml` at its top; push the app's folder";
    assert_eq!(
        refused(&bundle(&[(
            b"web/Spacefile.toml",
            EntryType::Regular,
            b"v = 1\n"
        )])),
        expected
    );
    assert_eq!(
        refused(&bundle(&[(b"Spacefile.toml/", EntryType::Directory, b"")])),
        expected
    );
    assert_eq!(refused(&gzip(b"")), expected);
}

#[test]
fn an_error_names_the_entry_when_one_is_to_blame() {
    assert_eq!(
        BundleError::entry("a/b", "the same path twice").to_string(),
        "bundle entry `a/b`: the same path twice"
    );
    assert_eq!(
        BundleError::bundle("the upload is not a gzip'd tar").to_string(),
        "bundle: the upload is not a gzip'd tar"
    );
}
