#!/usr/bin/env bash
# Soak test: `micros up` on benign and hostile Micros under a mixed load for minutes; prints
# requests served, outcomes by kind, and the runtime's resident memory, which must stay flat.
# Usage: ./benches/soak.sh [SECONDS] [CONCURRENCY]   (defaults: 180 s, 64 clients)
# Exits non-zero if memory grew or the server stopped answering.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dev profile optimises every dependency (wasmtime included), and shares the test build.
cargo build --quiet --bin micros --example soak
exec target/debug/examples/soak target/debug/micros "$@"
