#!/usr/bin/env bash
# The starters of `micros new` (Rust, Python, JavaScript), each built with its own toolchain and
# served by micros in turn, in the same run: component size, compile time (cache cold), process
# start to first 200 (cache warm), idle RSS, and `GET /` (the page, a fresh sandbox per request)
# under wrk: requests/s, p50/p99, CPU per request, latency of one request at a time, each with its
# ratio to the Rust starter.
# Usage: ./benches/languages.sh [SECONDS] [RUNS]   (defaults: 10 s, 3 runs; medians are reported)
# Needs: wrk (Debian: apt-get install wrk), python3 with venv and npm (the starters' build
# commands install the pinned componentize-py and componentize-js into each app's .tools/).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RUNS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

echo "== building micros (release)" >&2
cargo build --release --quiet --bin micros
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
. benches/measure.sh

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

declare -A RESULT SINGLE SIZE COMPILE START RSS
for lang in rust python js; do
  app="$work/$lang"
  echo "== $lang: micros new, build" >&2
  target/release/micros new "$app" --lang "$lang" 2>/dev/null
  if ! target/release/micros build "$app" >"$work/$lang-build.log" 2>&1; then
    cat "$work/$lang-build.log" >&2
    exit 1
  fi
  component=$(awk -F'"' '/^component/ { print $2; exit }' "$app/Spacefile.toml")
  SIZE[$lang]=$(stat -c %s "$app/main/$component" | awk '{ printf "%.1f", $1 / 1048576 }')
  echo "== $lang: micros check (compile, cache cold)" >&2
  t0=$(date +%s%N)
  target/release/micros check "$app" 2>/dev/null
  COMPILE[$lang]=$(ms_since "$t0")
  echo "== $lang: micros up (cache warm), wrk" >&2
  start "$work/$lang-up.log" target/release/micros up "$app" --listen 127.0.0.1:0
  START[$lang]=$START_MS
  RSS[$lang]=$(rss_mib "$PID")
  CONNECTIONS=32
  RESULT[$lang]=$(drive)
  CONNECTIONS=1
  SINGLE[$lang]=$(drive | awk '{ print $2 }')
  kill "$PID"; wait "$PID" 2>/dev/null || true
done

echo
echo "GET / of each starter; wrk -t1 -c32 -d${SECONDS_PER_RUN}s (and -c1 for one at a time), median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-10s | %9s | %10s | %9s | %8s | %10s | %8s | %8s | %10s | %11s |\n' starter "component" "compile" "start" "idle RSS" requests/s "p50 ms" "p99 ms" "CPU µs/req" "1 at a time"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------ ----------- ------------ ----------- ---------- ------------ ---------- ---------- ------------ -------------
read -r base_rps _ _ base_cpu <<<"${RESULT[rust]}"
base_single=${SINGLE[rust]}
for lang in rust python js; do
  read -r rps p50 p99 cpu <<<"${RESULT[$lang]}"
  printf '| %-10s | %7s MiB | %7s ms | %6s ms | %4s MiB | %10s | %8s | %8s | %10s | %8s ms |\n' \
    "$lang" "${SIZE[$lang]}" "${COMPILE[$lang]}" "${START[$lang]}" "${RSS[$lang]}" "$rps" "$p50" "$p99" "$cpu" "${SINGLE[$lang]}"
done
echo
echo "ratios to the Rust starter (same run):"
for lang in python js; do
  read -r rps _ _ cpu <<<"${RESULT[$lang]}"
  awk -v l="$lang" -v a="$rps" -v b="$base_rps" -v c="$cpu" -v d="$base_cpu" -v s="${SINGLE[$lang]}" -v t="$base_single" \
    'BEGIN { printf "  %-7s requests/s %.3fx, CPU per request %.1fx, one request at a time %.1fx as long\n", l, a / b, c / d, s / t }'
done
