#!/usr/bin/env bash
# Tail latency side by side: `micros up` and `wasmtime serve -Scli` on the hello component,
# started together and driven in turn by `wrk -t1 -c32`, each round once as is and once with wrk
# at `nice -n 19` (so that the client no longer preempts the server's threads on a small
# machine). Prints requests/s, p50 and p99 of every run.
# Usage: ./benches/p99.sh [SECONDS] [ROUNDS]   (defaults: 5 s, 3 rounds)
# Needs: wrk (Debian: apt-get install wrk) and the `wasmtime` CLI of the release micros links
# (Cargo.lock; today 50), on the PATH or named by $WASMTIME:
#   cargo install wasmtime-cli --version ^50 --locked
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

. benches/hello-app.sh
wasmtime_baseline || {
  echo "wasmtime $WASMTIME_MAJOR is missing: $WASMTIME_INSTALL (or set WASMTIME)" >&2
  exit 1
}
hello_app

target/release/micros check "$work/app" 2>/dev/null
target/release/micros up "$work/app" --listen 127.0.0.1:0 2>"$work/micros.log" &
"$WASMTIME" serve -Scli --addr 127.0.0.1:8972 "$work/app/web/hello.wasm" 2>/dev/null &
MICROS=
for _ in $(seq 1 400); do
  MICROS=$(grep -o -m1 'http://[0-9.:]*' "$work/micros.log" || true)
  if [ -n "$MICROS" ] && curl -fs -o /dev/null "$MICROS/" \
    && curl -fs -o /dev/null http://127.0.0.1:8972/; then break; fi
  sleep 0.05
done

# Prints "requests/s p50 p99" of one wrk run against URL; the rest of the arguments prefix wrk.
run() {
  local url=$1; shift
  "$@" wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" --latency "$url/" | awk '
    /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
    END { printf "%s %s %s", rps, p50, p99 }'
}

echo
echo "wrk -t1 -c32 -d${SECONDS_PER_RUN}s, $(nproc) cores, $(date -u +%F)"
printf '| %-14s | %12s | %18s | %12s | %18s |\n' run "micros req/s" "micros p50 / p99" \
  "wasmtime req/s" "wasmtime p50 / p99"
printf '|%s|%s|%s|%s|%s|\n' ---------------- -------------- -------------------- \
  -------------- --------------------
for round in $(seq 1 "$ROUNDS"); do
  for client in plain niced; do
    prefix=()
    [ "$client" = niced ] && prefix=(nice -n 19)
    read -r m_rps m_p50 m_p99 <<<"$(run "$MICROS" "${prefix[@]}")"
    read -r w_rps w_p50 w_p99 <<<"$(run http://127.0.0.1:8972 "${prefix[@]}")"
    label="$round"
    [ "$client" = niced ] && label="$round, wrk niced"
    printf '| %-14s | %12s | %18s | %12s | %18s |\n' "$label" "$m_rps" "$m_p50 / $m_p99" \
      "$w_rps" "$w_p50 / $w_p99"
  done
done
