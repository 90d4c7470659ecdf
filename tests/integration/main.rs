//! The integration tests: real guest components, real stores, real HTTP over loopback.
#![expect(
    clippy::unwrap_used,
    reason = "a test that cannot unwrap has failed: the panic says where"
)]

mod actions;
mod auth;
mod cli;
mod data;
mod deta_export;
mod drive;
mod front_door;
mod hostile;
mod import;
mod instances;
mod limits;
mod manifest;
mod outbound;
mod refusals;
mod server;
mod serving;
mod smuggling;
mod space_apps;
mod sqlite;
mod starters;
mod static_site;
mod support;
mod tls;
mod tmp;
mod watch;
mod world;

/// Every guest under `guests/` is used by a test: a guest nobody runs is dead weight.
#[test]
fn every_guest_has_a_test() {
    let sources: String = [
        "actions.rs",
        "auth.rs",
        "cli.rs",
        "data.rs",
        "drive.rs",
        "hostile.rs",
        "limits.rs",
        "manifest.rs",
        "outbound.rs",
        "serving.rs",
        "sqlite.rs",
        "tmp.rs",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(format!("tests/integration/{f}")).expect("test source"))
    .collect();
    for (name, _) in micros_guests::ALL {
        let constant = format!("guests::{}", name.to_uppercase());
        assert!(
            sources.contains(&constant),
            "guest `{name}` has no test: use `{constant}` in a test"
        );
    }
}
