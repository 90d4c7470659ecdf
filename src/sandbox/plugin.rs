//! Host interfaces beyond WASI and wasi:http, plugged into the sandbox: it links them and gives
//! each execution their state without naming any of them (SQLite is one, `services::sqlite`).

use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpHooks;

use super::Host;

/// A host interface a guest may import: linked into every Micro's linker at load, and given a
/// state of its own in every store, which its functions reach with [`Host::plugin`].
pub(crate) trait HostPlugin: Send + Sync + 'static {
    /// Adds the interface's functions to a Micro's linker.
    fn add_to_linker(&self, linker: &mut Linker<Host>) -> anyhow::Result<()>;

    /// The interface's state for one execution.
    fn new_state(&self, execution: &ExecutionInfo<'_>) -> Box<dyn Any + Send>;
}

/// What a plug-in may know of the execution it makes state for.
pub(crate) struct ExecutionInfo<'a> {
    /// The Micro's `src`, canonical.
    pub root: &'a Arc<Path>,
    /// When the execution must end; `None` only in a benchmark build without limits.
    pub deadline: Option<Instant>,
}

/// Where a Micro's outgoing HTTP (`wasi:http/outgoing-handler`) goes: the hooks of each
/// execution, made fresh for it, decide and send.
pub(crate) trait OutgoingHttp: Send + Sync + 'static {
    /// The hooks of a new execution.
    fn hooks(&self) -> Box<dyn WasiHttpHooks + Send>;
}

/// The plug-ins every Micro of an app is linked with.
pub(crate) type Plugins = Arc<[Arc<dyn HostPlugin>]>;
