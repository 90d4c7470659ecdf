//! Not a Micro: a `wasi:cli/command` component (it exports `run`, no HTTP handler), which the
//! runtime must refuse at load with a message that says so.

fn main() {
    println!("a command, not a Micro");
}
