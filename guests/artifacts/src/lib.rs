//! Paths of the guest components under `guests/`, compiled once per build by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
