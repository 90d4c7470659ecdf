//! The world in `wit/`: it parses, and every test guest that is a Micro targets it.

use micros_guests as guests;

#[test]
fn every_guest_targets_the_micro_world() {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir("wit").expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some("micro"))
        .expect("the `micro` world");
    for (name, path) in guests::ALL {
        let wasm = std::fs::read(path).unwrap();
        let targets = wit_component::targets(&resolve, world, &wasm, false);
        if guests::HOSTILE.contains(name) {
            // Hand-written in the text format with only the types their handler names: wasmtime
            // links them (the tests in `hostile.rs` prove it), the WIT checker wants every type.
            continue;
        }
        if *name == "command" {
            // The one guest that is deliberately not a Micro.
            assert!(
                targets.is_err(),
                "the command guest exports no HTTP handler"
            );
        } else {
            targets.unwrap_or_else(|e| panic!("guest `{name}` does not target the world: {e:?}"));
        }
    }
    // A core module is not a component of the world.
    let core = std::fs::read("tests/manifests/core-module/web/web.wasm").unwrap();
    assert!(wit_component::targets(&resolve, world, &core, false).is_err());
}
