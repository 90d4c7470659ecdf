#!/usr/bin/env bash
# A static Micro against the hello Rust Micro, on the same server in the same run: one app with a
# static primary Micro (`/`, an index.html of about 1 KiB) and the hello component at `/hello`.
# Requests/s, p50/p99 and CPU per request of each under wrk, and their ratio: a static file makes
# no sandbox, so it should cost a fraction of an execution.
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

start "$work/up.log" target/release/micros up "$work/app" --listen 127.0.0.1:0
base=$URL
CONNECTIONS=32
URL=$base
static=$(drive)
URL=$base/hello
hello=$(drive)
kill "$PID"; wait "$PID" 2>/dev/null || true

echo
echo "one server, wrk -t1 -c32 -d${SECONDS_PER_RUN}s, median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-22s | %10s | %8s | %8s | %10s |\n' "GET" requests/s "p50 ms" "p99 ms" "CPU µs/req"
printf '|%s|%s|%s|%s|%s|\n' ------------------------ ------------ ---------- ---------- ------------
read -r s_rps s_p50 s_p99 s_cpu <<<"$static"
read -r h_rps h_p50 h_p99 h_cpu <<<"$hello"
printf '| %-22s | %10s | %8s | %8s | %10s |\n' "/ (static index.html)" "$s_rps" "$s_p50" "$s_p99" "$s_cpu"
printf '| %-22s | %10s | %8s | %8s | %10s |\n' "/hello/ (Rust hello)" "$h_rps" "$h_p50" "$h_p99" "$h_cpu"
awk -v a="$s_rps" -v b="$h_rps" -v c="$s_cpu" -v d="$h_cpu" \
  'BEGIN { printf "static / hello: requests/s %.2fx, CPU per request %.2fx\n", a / b, c / d }'
