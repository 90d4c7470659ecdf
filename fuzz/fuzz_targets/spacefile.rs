//! Any text as a Space `Spacefile` for `micros import`: reading and translating it never
//! panics, never hangs on YAML aliases, and whatever it writes is a manifest that parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // An empty folder: the engines' defaults find nothing in it.
    let dir = std::env::temp_dir().join("micros-fuzz-spacefile");
    let _ = std::fs::create_dir_all(&dir);
    if let Err(error) = micros::import::import_text(&dir, text) {
        let message = format!("{error:#}");
        assert!(
            !message.contains("is a bug of `micros import`"),
            "{message}"
        );
    }
});
