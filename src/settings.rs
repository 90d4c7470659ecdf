//! Layer 2, plain settings: the limits of an execution, of the front door and of compiling, and
//! the layout of an app's state folder. Each feature above defines its own settings type; the
//! app layer assembles them into [`crate::Config`].

pub mod limits;
pub mod state;
