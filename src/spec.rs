//! Layer 1, what an app is: the manifest, its schedules and which Micro a path reaches. Pure
//! types and functions: nothing here runs a guest, opens a socket or knows of the layers above.

pub mod manifest;
pub mod routing;
pub mod schedule;
