//! Reading Deta's export: bases as a JSON array or JSON lines, the refusals (each naming the file
//! and the item), names, the one folder a zip unpacks into, drives, and all-or-nothing writes.

use serde_json::json;

use super::*;
use crate::services::data::MAX_ITEM_BYTES;
use crate::services::data::files::FileStore as _;
use crate::services::data::store::ItemStore as _;
use crate::settings::limits::DEFAULT_DATA_BYTES;

/// `result`'s value, or a panic with its error.
fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:#}"))
}

/// `result`'s error, in full; a panic if there is none.
fn refused<T: std::fmt::Debug>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(e) => format!("{e:#}"),
    }
}

/// A new folder holding `files` (path under it, contents).
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (path, contents) in files {
        let path = dir.path().join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

/// The items read from `bases/{base}.json` holding `text`, or the error with the file's path
/// shown as `FILE`.
fn items(base: &str, text: &str) -> Result<Vec<Value>, String> {
    let file = format!("bases/{base}.json");
    let dir = folder(&[(&file, text.as_bytes())]);
    match read(dir.path()) {
        Ok(export) => Ok(export
            .bases
            .into_iter()
            .flat_map(|base| base.items)
            .map(Value::Object)
            .collect()),
        Err(e) => {
            Err(format!("{e:#}").replace(&dir.path().join(&file).display().to_string(), "FILE"))
        }
    }
}

#[test]
fn a_base_as_a_json_array_is_read() {
    let text = r#"[
        {"key": "a", "n": 1},
        {"key": "b", "__expires": 1700000000, "nested": {"list": [1, "two", null]}}
    ]"#;
    assert_eq!(
        items("notes", text),
        Ok(vec![
            json!({"key": "a", "n": 1}),
            json!({"key": "b", "__expires": 1_700_000_000, "nested": {"list": [1, "two", null]}}),
        ])
    );
    assert_eq!(items("empty", "[]"), Ok(Vec::new()));
    assert_eq!(
        items("bom", "\u{feff}[{\"key\": \"a\"}]"),
        Ok(vec![json!({"key": "a"})])
    );
}

#[test]
fn a_base_as_json_lines_is_read() {
    assert_eq!(
        items("notes", "{\"key\": \"a\"}\n\n{\"key\": \"b\", \"n\": 2}\n"),
        Ok(vec![json!({"key": "a"}), json!({"key": "b", "n": 2})])
    );
    assert_eq!(items("empty", ""), Ok(Vec::new()));
}

#[test]
fn an_item_without_a_string_key_is_refused_naming_the_file_and_index() {
    for text in [
        r#"[{"key": "a"}, {"n": 1}]"#,
        r#"[{"key": "a"}, {"key": 5}]"#,
        "{\"key\": \"a\"}\n{\"key\": null}\n",
    ] {
        assert_eq!(
            items("notes", text),
            Err(
                "`FILE` item 1: the item has no string `key`: give it one, or remove the item"
                    .into()
            ),
            "{text}"
        );
    }
    assert_eq!(
        items("notes", r#"[{"key": ""}]"#),
        Err("`FILE` item 0: the key must not be empty; fix or remove the item".into())
    );
}

#[test]
fn an_item_that_is_not_an_object_is_refused() {
    for text in [r#"[{"key": "a"}, "text"]"#, "{\"key\": \"a\"}\n[1]\n"] {
        assert_eq!(
            items("notes", text),
            Err("`FILE` item 1: not a JSON object: an item is `{\"key\": \"...\", ...}`".into()),
            "{text}"
        );
    }
}

#[test]
fn a_bad_expires_is_refused() {
    for expires in [r#""tomorrow""#, "1.5", "null"] {
        assert_eq!(
            items(
                "notes",
                &format!(r#"[{{"key": "a", "__expires": {expires}}}]"#)
            ),
            Err(
                "`FILE` item 0: `__expires` must be a Unix timestamp in seconds; fix or remove \
                 the item"
                    .into()
            ),
            "{expires}"
        );
    }
}

#[test]
fn a_key_twice_in_a_base_is_refused() {
    assert_eq!(
        items(
            "notes",
            r#"[{"key": "a"}, {"key": "b"}, {"key": "a", "n": 2}]"#
        ),
        Err(
            "`FILE` item 2: key `a` is item 0's too: keys are unique in a base; remove one of \
             the two"
                .into()
        )
    );
}

#[test]
fn item_size_limit_obeyed_and_violated() {
    let big = |bytes: usize| format!(r#"[{{"key": "a", "v": "{}"}}]"#, "x".repeat(bytes));
    // `{"key":"a","v":"..."}`: 18 bytes around the value.
    assert_eq!(
        items("notes", &big(MAX_ITEM_BYTES - 18)).map(|items| items.len()),
        Ok(1)
    );
    assert_eq!(
        items("notes", &big(MAX_ITEM_BYTES - 17)),
        Err(format!(
            "`FILE` item 0: the item is {} bytes, past the limit of {MAX_ITEM_BYTES}; fix or \
             remove the item",
            MAX_ITEM_BYTES + 1
        ))
    );
}

#[test]
fn a_file_that_is_not_json_is_refused() {
    let error = items("notes", r#"[{"key": "a"},"#).unwrap_err();
    assert!(
        error.starts_with("`FILE` is not a JSON array of items: EOF while parsing")
            && error.ends_with("; fix the file"),
        "{error}"
    );
    let error = items("notes", "{\"key\": \"a\"}\n{\"key\": \n").unwrap_err();
    assert!(
        error.starts_with("`FILE` item 1: not JSON: EOF while parsing"),
        "{error}"
    );
}

#[test]
fn a_bad_base_name_is_refused() {
    let dir = folder(&[("bases/my notes.json", b"[]")]);
    let path = dir.path().join("bases/my notes.json");
    assert_eq!(
        refused(read(dir.path())),
        format!(
            "`{}`: `my notes` is not a base name: up to 64 letters, digits, `_` and `-`; rename \
             the file",
            path.display()
        )
    );
    let dir = folder(&[("bases/notes.csv", b"key\na\n")]);
    assert_eq!(
        refused(read(dir.path())),
        format!(
            "`{}` is not a base: Deta's export holds one `{{base}}.json` file per base; move it \
             out of `bases/`",
            dir.path().join("bases/notes.csv").display()
        )
    );
}

#[test]
fn a_bad_drive_is_refused() {
    let dir = folder(&[("drives/my drive/a.txt", b"a")]);
    assert_eq!(
        refused(read(dir.path())),
        format!(
            "`{}`: `my drive` is not a drive name: up to 64 letters, digits, `_` and `-`; rename \
             the folder",
            dir.path().join("drives/my drive").display()
        )
    );
    let dir = folder(&[("drives/a.txt", b"a")]);
    assert_eq!(
        refused(read(dir.path())),
        format!(
            "`{}` is not a drive: Deta's export holds one folder per drive; move it out of \
             `drives/`",
            dir.path().join("drives/a.txt").display()
        )
    );
}

#[test]
fn the_export_is_found_in_the_folder_or_its_one_folder() {
    let dir = folder(&[("bases/a.json", b"[]")]);
    assert_eq!(ok(root(dir.path())), Some(dir.path().to_path_buf()));
    // A zip unpacked into a folder of its own; hidden folders and files beside it aside.
    let dir = folder(&[
        ("space-export/drives/d/a.txt", b"a"),
        (".hidden/bases/b.json", b"[]"),
        ("README", b"x"),
    ]);
    assert_eq!(ok(root(dir.path())), Some(dir.path().join("space-export")));
    // Two folders: which is meant is not for us to guess.
    let dir = folder(&[("one/bases/a.json", b"[]"), ("two/bases/a.json", b"[]")]);
    assert_eq!(ok(root(dir.path())), None);
    // Deeper is not looked at.
    let dir = folder(&[("one/two/bases/a.json", b"[]")]);
    assert_eq!(ok(root(dir.path())), None);
    assert_eq!(ok(root(&dir.path().join("missing"))), None);
}

#[test]
fn drive_files_are_named_by_their_path_and_typed_by_their_extension() {
    let dir = folder(&[
        ("drives/media/photos/2023/a.png", b"\x89PNG"),
        ("drives/media/photos/._a.png", b"mac"),
        ("drives/media/notes.txt", b"text"),
        ("drives/media/.env", b"A=1"),
        ("drives/media/.DS_Store", b"mac"),
        ("drives/.DS_Store", b"mac"),
        ("drives/empty/.DS_Store", b"mac"),
        ("bases/.DS_Store", b"mac"),
    ]);
    let export = ok(read(dir.path()));
    let drives: Vec<(&str, Vec<(&str, &str)>)> = export
        .drives
        .iter()
        .map(|drive| {
            let files = drive
                .files
                .iter()
                .map(|file| (file.name.as_str(), file.content_type.as_str()))
                .collect();
            (drive.name.as_str(), files)
        })
        .collect();
    assert_eq!(
        drives,
        vec![
            ("empty", vec![]),
            (
                "media",
                vec![
                    // A dotfile is data (a Drive name may begin with `.`); it has no extension.
                    (".env", "application/octet-stream"),
                    ("notes.txt", "text/plain"),
                    ("photos/2023/a.png", "image/png"),
                ]
            ),
        ]
    );
    let skipped: Vec<PathBuf> = [
        "bases/.DS_Store",
        "drives/.DS_Store",
        "drives/empty/.DS_Store",
        "drives/media/.DS_Store",
        "drives/media/photos/._a.png",
    ]
    .iter()
    .map(|path| dir.path().join(path))
    .collect();
    assert_eq!(export.skipped, skipped);
}

/// A state folder and its store, to read what an import wrote.
fn state() -> (tempfile::TempDir, crate::settings::state::StateDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = ok(crate::settings::state::StateDir::open(dir.path()));
    (dir, state)
}

#[test]
fn an_import_replaces_same_keys_and_keeps_the_rest() {
    let (_dir, state) = state();
    let store = ok(SqliteStore::open(&state.path().join(DATA_FILE)));
    let before = [json!({"key": "a", "old": true}), json!({"key": "kept"})];
    let before: Vec<Item> = before
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
    ok(store.put("notes", &before));
    let export = folder(&[
        ("bases/notes.json", br#"[{"key": "a", "new": 1}]"#),
        ("drives/media/photos/2023/a.png", b"\x89PNG"),
    ]);
    let imported = ok(import(&state, export.path(), DEFAULT_DATA_BYTES));
    assert_eq!(
        imported,
        Imported {
            format: Format::Deta,
            folder: export.path().to_path_buf(),
            moved: Moved { items: 1, files: 1 },
            bases: vec![("notes".into(), 1)],
            drives: vec![("media".into(), 1)],
            skipped: Vec::new(),
        }
    );
    let get = |key: &str| ok(store.get("notes", key, 0)).map(Value::Object);
    assert_eq!(get("a"), Some(json!({"key": "a", "new": 1})));
    assert_eq!(get("kept"), Some(json!({"key": "kept"})));
    let file = ok(store.get_file("media", "photos/2023/a.png"));
    let file = file.unwrap_or_else(|| panic!("the file was not written"));
    assert_eq!(
        (file.content_type.as_str(), file.data.as_slice()),
        ("image/png", b"\x89PNG".as_slice())
    );
}

#[test]
fn a_write_that_fails_midway_writes_nothing() {
    let (_dir, state) = state();
    let export = folder(&[
        ("bases/notes.json", br#"[{"key": "a"}]"#),
        ("drives/media/a.txt", b"a"),
        ("drives/media/b.txt", b"b"),
    ]);
    let checked = ok(read(export.path()));
    // Gone between the check and the write: the base and `a.txt` are written by then.
    let gone = export.path().join("drives/media/b.txt");
    std::fs::remove_file(&gone).unwrap_or_else(|e| panic!("{e}"));
    let error = refused(write(&state, checked, DEFAULT_DATA_BYTES));
    assert!(
        error.starts_with(&format!("failed to read `{}`", gone.display())),
        "{error}"
    );
    let store = ok(SqliteStore::open(&state.path().join(DATA_FILE)));
    assert_eq!(ok(store.get("notes", "a", 0)), None);
    assert!(ok(store.get_file("media", "a.txt")).is_none());
}

#[test]
fn a_zip_file_is_refused_with_a_hint() {
    let (_dir, state) = state();
    let dir = folder(&[("export.zip", b"PK\x03\x04")]);
    let zip = dir.path().join("export.zip");
    assert_eq!(
        refused(super::super::import(&state, &zip, DEFAULT_DATA_BYTES)),
        format!(
            "`{}` is a zip file: unzip it first (`unzip {} -d FOLDER`) and import the folder",
            zip.display(),
            zip.display()
        )
    );
}

#[test]
fn data_limit_obeyed_and_violated() {
    let file = vec![b'x'; 256 * 1024];
    let export = folder(&[
        ("bases/notes.json", br#"[{"key": "a"}]"#),
        ("drives/media/big.bin", file.as_slice()),
    ]);
    // Past the limit: refused whole, naming the limit and the flag.
    let (_dir, state) = state();
    let limit = 128 * 1024;
    let error = refused(import(&state, export.path(), limit));
    let prefix = format!(
        "importing `{}` would take the app's data to ",
        export.path().display()
    );
    assert!(error.starts_with(&prefix), "{error}");
    assert!(
        error.ends_with(&format!(
            " bytes, past its limit of {limit} bytes: nothing was imported; raise the limit \
             (`--data-limit`, on this command and on `micros up`) or import less"
        )),
        "{error}"
    );
    let store = ok(SqliteStore::open(&state.path().join(DATA_FILE)));
    assert_eq!(ok(store.get("notes", "a", 0)), None);
    assert!(ok(store.get_file("media", "big.bin")).is_none());
    // Within it: all of it.
    let imported = ok(import(&state, export.path(), 1024 * 1024));
    assert_eq!(imported.moved, Moved { items: 1, files: 1 });
}

#[test]
fn a_drive_file_name_past_its_limit_is_refused() {
    // Nested folders make a name longer than any one file name may be.
    let long = format!("{}/f.txt", vec!["a".repeat(250); 5].join("/"));
    let fits = folder(&[(&format!("drives/media/{}", &long[251..]), b"a".as_slice())]);
    assert_eq!(ok(read(fits.path())).drives[0].files.len(), 1);
    let dir = folder(&[(&format!("drives/media/{long}"), b"a".as_slice())]);
    assert_eq!(
        refused(read(dir.path())),
        format!(
            "`{}`: the file's name is past {} bytes; rename it",
            dir.path().join("drives/media").join(&long).display(),
            crate::services::data::drive::MAX_NAME_BYTES
        )
    );
}
