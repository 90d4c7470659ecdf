#!/usr/bin/env bash
# Load benchmark: the hello component served by micros, against a native hyper hello (the
# physical limit here) and `wasmtime serve` (what users would pick instead) when a wasmtime of
# the release micros links is at hand: all started together, then driven by wrk on loopback in
# turn, one run each per round, in the same run.
# Usage: ./benches/load.sh [SECONDS] [RUNS]   (defaults: 10 s, 3 runs; medians are reported)
# Needs: wrk (Debian: apt-get install wrk); optionally the `wasmtime` CLI of the release micros
# links (Cargo.lock; today 50), on the PATH or named by $WASMTIME:
#   cargo install wasmtime-cli --version ^50 --locked
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
CONNECTIONS=32
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

. benches/hello-app.sh
hello_app --example native_hello
. benches/measure.sh

# Every server is started first, then driven in turn, one run each per round: the machine's
# drift (it is shared) falls on all of them alike instead of on whichever ran last.
declare -A PIDS URLS ROWS RESULT
KEYS=()
serve() {
  local key=$1; shift
  start "$work/$key.log" "$@"
  PIDS[$key]=$PID; URLS[$key]=$URL; KEYS+=("$key")
}

echo "== micros up (compile cache warm)" >&2
target/release/micros check "$work/app" 2>/dev/null
serve micros target/release/micros up "$work/app" --listen 127.0.0.1:0
MICROS_START_MS=$START_MS
MICROS_IDLE_RSS=$(rss_mib "$PID")
echo "== native hyper hello" >&2
serve native target/release/examples/native_hello 127.0.0.1:0
echo "== micros up --no-pooling" >&2
serve nopool target/release/micros up "$work/app" --listen 127.0.0.1:0 --no-pooling
if wasmtime_baseline; then
  echo "== wasmtime serve -Scli" >&2
  # It prints no address of its own: start() finds the one echoed here.
  serve wasmtime sh -c 'echo http://127.0.0.1:8971 >&2;
    exec "$2" serve -Scli --addr 127.0.0.1:8971 "$1" 2>/dev/null' sh "$work/app/web/hello.wasm" "$WASMTIME"
else
  echo "== wasmtime $WASMTIME_MAJOR not found: skipped ($WASMTIME_INSTALL)" >&2
fi

for run in $(seq 1 "$RUNS"); do
  for key in "${KEYS[@]}"; do
    echo "== run $run/$RUNS: $key" >&2
    PID=${PIDS[$key]}; URL=${URLS[$key]}
    ROWS[$key]+="$(drive_once)"$'\n'
  done
done
MICROS_LOADED_RSS=$(rss_mib "${PIDS[micros]}")
for key in "${KEYS[@]}"; do
  RESULT[$key]=$(printf '%s' "${ROWS[$key]}" | medians)
  kill "${PIDS[$key]}" 2>/dev/null || true
done
wait 2>/dev/null || true

echo
echo "wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-28s | %10s | %8s | %8s | %12s | %s |\n' server requests/s p50\ ms p99\ ms "CPU µs/req" "vs wasmtime serve"
printf '|%s|%s|%s|%s|%s|%s|\n' ------------------------------ ------------ ---------- ---------- -------------- -------------------
base=$(echo "${RESULT[wasmtime]:-}" | awk '{ print $1 }')
for key in native micros nopool wasmtime; do
  [ -n "${RESULT[$key]:-}" ] || continue
  read -r rps p50 p99 cpu <<<"${RESULT[$key]}"
  case $key in
    native) name="native hyper hello";;
    micros) name="micros up (pooling)";;
    nopool) name="micros up --no-pooling";;
    wasmtime) name="wasmtime serve -Scli $("$WASMTIME" --version | awk '{ print $2 }')";;
  esac
  ratio=-
  [ -n "$base" ] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')
  printf '| %-28s | %10s | %8s | %8s | %12s | %s |\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$ratio"
done
echo
echo "micros: process start to first 200 (cache warm): ${MICROS_START_MS} ms; idle RSS ${MICROS_IDLE_RSS} MiB; after load ${MICROS_LOADED_RSS} MiB"
awk -v a="$MICROS_LOADED_RSS" -v b="$MICROS_IDLE_RSS" -v c=$CONNECTIONS \
  'BEGIN { printf "micros: memory per in-flight request, (after load - idle) / %d: %.2f MiB\n", c, (a - b) / c }'
