//! Rebuilds the library when a starter or the WIT changes: `micros new` carries both inside the
//! binary (`include_dir!` reads them, and cargo cannot see that by itself).

fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=wit");
}
