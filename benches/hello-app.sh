# Sourced by load.sh and p99.sh for `hello_app [EXTRA CARGO BUILD ARGUMENTS...]`: builds micros
# (and the extra targets) in release and the hello guest, and writes a one-Micro app serving it
# to "$work/app" ("$work" is a temporary folder removed, with every background job, at exit).
hello_app() {
  echo "== building (release)" >&2
  cargo build --release --quiet --bin micros "$@"
  rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
  cargo build --release --quiet --target wasm32-wasip2 --manifest-path guests/Cargo.toml \
    -p hello --target-dir target/bench-guests
  work=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
  mkdir -p "$work/app/web"
  cp target/bench-guests/wasm32-wasip2/release/hello.wasm "$work/app/web/hello.wasm"
  cat > "$work/app/Spacefile.toml" <<'TOML'
v = 1
[[micros]]
name = "web"
src = "web"
component = "hello.wasm"
public = true
TOML
}

# The baseline `wasmtime serve`: the wasmtime release micros links (its major, from Cargo.lock),
# so that both sides run the same runtime. $WASMTIME names the binary (default: `wasmtime` on
# the PATH); `wasmtime_baseline` says whether it is of that release.
WASMTIME=${WASMTIME:-wasmtime}
WASMTIME_MAJOR=$(awk '/^name = "wasmtime"$/ { getline; gsub(/"/, ""); split($3, v, "."); print v[1]; exit }' Cargo.lock)
WASMTIME_INSTALL="cargo install wasmtime-cli --version ^$WASMTIME_MAJOR --locked"
wasmtime_baseline() {
  command -v "$WASMTIME" >/dev/null && "$WASMTIME" --version | grep -q "^wasmtime $WASMTIME_MAJOR\."
}
