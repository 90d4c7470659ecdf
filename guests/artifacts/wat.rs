//! Hostile components no Rust compiler would emit, written in the WebAssembly text format: each
//! exports the `wasi:http` handler a Micro must, so it loads, and then misbehaves.

/// The handler part every hostile component shares: imports the two `wasi:http` resources the
/// handler's signature names, and exports `handle` from core instance `$main`, which must export
/// a `handle` function taking the two handles (and never answers).
fn handler(core: &str, extra_imports: &str) -> String {
    format!(
        r#"(component
  (import "wasi:http/types@0.2.12" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))
  ))
  {extra_imports}
  (alias export $types "incoming-request" (type $request))
  (alias export $types "response-outparam" (type $outparam))
  {core}
  (func $handle (param "request" (own $request)) (param "response-out" (own $outparam))
    (canon lift (core func $main "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.12" (instance $handler))
)"#
    )
}

/// A core module `$m` with `defs` and a `handle` that returns at once, instantiated as `$main`.
fn module(defs: &str) -> String {
    format!(
        "(core module $m {defs}\n    (func (export \"handle\") (param i32 i32)))\n  (core instance $main (instantiate $m))"
    )
}

/// Every hostile component: its constant's name and its text.
pub fn components() -> Vec<(&'static str, String)> {
    vec![
        // 40 linear memories in one core module: past the 32 a store may hold.
        (
            "many_memories",
            handler(&module(&"(memory 1) ".repeat(40)), ""),
        ),
        // 300 tables, 60 in each of five instances (a module may define at most 100): past the
        // 256 a store may hold.
        (
            "many_tables",
            handler(
                &format!(
                    "(core module $tables {})\n  {}\n  {}",
                    "(table 1 funcref) ".repeat(60),
                    "(core instance (instantiate $tables)) ".repeat(5),
                    module("")
                ),
                "",
            ),
        ),
        // 300 core instances of an empty module: past the 256 a store may hold.
        (
            "many_instances",
            handler(
                &format!(
                    "(core module $empty)\n  {}\n  {}",
                    "(core instance (instantiate $empty)) ".repeat(300),
                    module("")
                ),
                "",
            ),
        ),
        // A start function that never returns: instantiation itself must be stopped.
        (
            "looping_start",
            handler(
                &module("(func $spin (loop $again (br $again))) (start $spin)"),
                "",
            ),
        ),
        // A start function that grows memory to 4 GiB, and traps when refused: the memory limit
        // holds during instantiation too.
        (
            "growing_start",
            handler(
                &module(
                    "(memory 1) (func $grow (if (i32.eq (memory.grow (i32.const 65536)) \
                     (i32.const -1)) (then unreachable))) (start $grow)",
                ),
                "",
            ),
        ),
        // Imports an interface the runtime does not provide: refused at load.
        (
            "unknown_import",
            handler(
                &module(""),
                r#"(import "acme:backdoor/shell@1.0.0" (instance (export "run" (func (param "command" string)))))"#,
            ),
        ),
    ]
}
