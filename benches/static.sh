#!/usr/bin/env bash
# A static Micro against the hello Rust Micro, on the same server in the same run: one app with a
# static primary Micro (`/`, an index.html of about 1 KiB) and the hello component at `/hello`.
# Requests/s, p50/p99 and CPU per request of each under wrk, and their ratio: a static file makes
# no sandbox, so it should cost a fraction of an execution.
# "shared": server and wrk on both cores; "pinned": the server on core 0, wrk on core 1.
# Usage: ./benches/static.sh [SECONDS] [RUNS]   (defaults: 10 s, 3 runs; medians are reported)
# Needs: wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
. benches/hello-app.sh
. benches/measure.sh
hello_app
mkdir -p "$work/app/front"
{
  echo '<!doctype html><title>micros</title>'
  for _ in $(seq 1 20); do echo '<p>hello from a static Micro</p>'; done
} > "$work/app/front/index.html"
cat > "$work/app/Spacefile.toml" <<'TOML'
v = 1
[[micros]]
name = "front"
src = "front"
engine = "static"
primary = true
public = true

[[micros]]
name = "web"
src = "web"
component = "hello.wasm"
path = "/hello"
public = true
TOML

# Two ways to share the 2 cores: as the other benchmarks do (server and wrk on both), and with the
# server on core 0 and wrk on core 1, so that the server's capacity is measured, not the client's
# share of the cores (wrk's CPU per request is the same for both paths and caps the first ratio).
pass() {
  local mode=$1 pin_server=()
  if [ "$mode" = pinned ]; then
    pin_server=(taskset -c 0)
    wrk() { taskset -c 1 wrk "$@"; }
  fi
  start "$work/up-$mode.log" "${pin_server[@]}" target/release/micros up "$work/app" --listen 127.0.0.1:0
  local base=$URL
  CONNECTIONS=32
  URL=$base
  STATIC[$mode]=$(drive)
  URL=$base/hello
  HELLO[$mode]=$(drive)
  kill "$PID"; wait "$PID" 2>/dev/null || true
  unset -f wrk
}
declare -A STATIC HELLO RATIO
pass shared
if [ "$(nproc)" -ge 2 ]; then pass pinned; fi

echo
echo "one server, wrk -t1 -c32 -d${SECONDS_PER_RUN}s, median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-7s | %-22s | %10s | %8s | %8s | %10s |\n' cores "GET" requests/s "p50 ms" "p99 ms" "CPU µs/req"
printf '|%s|%s|%s|%s|%s|%s|\n' --------- ------------------------ ------------ ---------- ---------- ------------
for mode in shared pinned; do
  [ -n "${STATIC[$mode]:-}" ] || continue
  read -r s_rps s_p50 s_p99 s_cpu <<<"${STATIC[$mode]}"
  read -r h_rps h_p50 h_p99 h_cpu <<<"${HELLO[$mode]}"
  printf '| %-7s | %-22s | %10s | %8s | %8s | %10s |\n' "$mode" "/ (static index.html)" "$s_rps" "$s_p50" "$s_p99" "$s_cpu"
  printf '| %-7s | %-22s | %10s | %8s | %8s | %10s |\n' "$mode" "/hello/ (Rust hello)" "$h_rps" "$h_p50" "$h_p99" "$h_cpu"
  RATIO[$mode]=$(awk -v a="$s_rps" -v b="$h_rps" -v c="$s_cpu" -v d="$h_cpu" \
    'BEGIN { printf "requests/s %.2fx, CPU per request %.2fx", a / b, c / d }')
done
for mode in shared pinned; do
  [ -n "${RATIO[$mode]:-}" ] && echo "static / hello, $mode: ${RATIO[$mode]}"
done
