#!/usr/bin/env bash
# Load benchmark: the hello component served by micros, against a native hyper hello (the
# physical limit here) and `wasmtime serve` (what users would pick instead) when a wasmtime 48
# binary is on the PATH, each driven by wrk on loopback in turn, in the same run.
# Usage: ./benches/load.sh [SECONDS] [RUNS]   (defaults: 10 s, 3 runs; medians are reported)
# Needs: wrk (Debian: apt-get install wrk); optionally wasmtime 48:
#   cargo install wasmtime-cli --version 48.0.8 --locked
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
CONNECTIONS=32
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

. benches/hello-app.sh
hello_app --example native_hello

# Starts a server in the background; waits for its first 200; sets PID and URL, and START_MS
# (process start to first 200).
start() {
  local log=$1; shift
  local t0; t0=$(date +%s%N)
  "$@" 2>"$log" &
  PID=$!
  URL=
  for _ in $(seq 1 2000); do
    URL=$(grep -o -m1 'http://[0-9.:]*' "$log" || true)
    if [ -n "$URL" ] && curl -fs -o /dev/null "$URL/"; then break; fi
    sleep 0.005
  done
  START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# CPU seconds (user + system) used so far by a process.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Drives URL with wrk RUNS times; prints "rps p50_ms p99_ms cpu_us_per_request" (medians).
drive() {
  local rows=()
  for _ in $(seq 1 "$RUNS"); do
    local before; before=$(cpu_seconds "$PID")
    local out; out=$(wrk -t1 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" --latency "$URL/")
    local after; after=$(cpu_seconds "$PID")
    local requests; requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    local rps; rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    local p50; p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
    local p99; p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    local cpu; cpu=$(awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')
    rows+=("$rps $(to_ms "$p50") $(to_ms "$p99") $cpu")
  done
  local medians=()
  for column in 1 2 3 4; do
    medians+=("$(printf '%s\n' "${rows[@]}" | awk -v c=$column '{ print $c }' | sort -g \
      | sed -n "$(( (RUNS + 1) / 2 ))p")")
  done
  echo "${medians[*]}"
}

# wrk prints latencies as 1.23ms, 456.00us or 1.02s: in milliseconds.
to_ms() {
  awk -v t="$1" 'BEGIN {
    if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
    else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
    else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 } }'
}

declare -A RESULT
echo "== native hyper hello" >&2
start "$work/native.log" target/release/examples/native_hello 127.0.0.1:0
RESULT[native]=$(drive); kill "$PID"; wait "$PID" 2>/dev/null || true

echo "== micros up (compile cache warm)" >&2
target/release/micros check "$work/app" 2>/dev/null
start "$work/micros.log" target/release/micros up "$work/app" --listen 127.0.0.1:0
MICROS_START_MS=$START_MS
MICROS_IDLE_RSS=$(rss_mib "$PID")
RESULT[micros]=$(drive)
MICROS_LOADED_RSS=$(rss_mib "$PID")
kill "$PID"; wait "$PID" 2>/dev/null || true

echo "== micros up --no-pooling" >&2
start "$work/micros-np.log" target/release/micros up "$work/app" --listen 127.0.0.1:0 --no-pooling
RESULT[nopool]=$(drive); kill "$PID"; wait "$PID" 2>/dev/null || true

if command -v wasmtime >/dev/null && wasmtime --version | grep -q '^wasmtime 48\.'; then
  echo "== wasmtime serve -Scli" >&2
  start "$work/wasmtime.log" wasmtime serve -Scli --addr 127.0.0.1:8971 "$work/app/web/hello.wasm"
  URL=http://127.0.0.1:8971
  RESULT[wasmtime]=$(drive); kill "$PID"; wait "$PID" 2>/dev/null || true
else
  echo "== wasmtime 48 not found: skipped (cargo install wasmtime-cli --version 48.0.8 --locked)" >&2
fi

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
    wasmtime) name="wasmtime serve -Scli";;
  esac
  ratio=-
  [ -n "$base" ] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')
  printf '| %-28s | %10s | %8s | %8s | %12s | %s |\n' "$name" "$rps" "$p50" "$p99" "$cpu" "$ratio"
done
echo
echo "micros: process start to first 200 (cache warm): ${MICROS_START_MS} ms; idle RSS ${MICROS_IDLE_RSS} MiB; after load ${MICROS_LOADED_RSS} MiB"
awk -v a="$MICROS_LOADED_RSS" -v b="$MICROS_IDLE_RSS" -v c=$CONNECTIONS \
  'BEGIN { printf "micros: memory per in-flight request, (after load - idle) / %d: %.2f MiB\n", c, (a - b) / c }'
