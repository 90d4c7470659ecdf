#!/usr/bin/env bash
# What a process per core would gain (BENCHMARKS.md, 28.): the hello Micro and the Python and
# JavaScript starters, each served by one `micros up` on both cores (wrk -c32), then by two
# `micros up` of the same app, each pinned to a core of its own (taskset) and driven at once by a
# wrk of its own (-c16 each): requests/s of each way, alternating per round, in the same run.
# Usage: ./benches/processes.sh [SECONDS] [RUNS]   (defaults: 5 s, 3 runs; medians are reported)
# Needs: wrk and taskset (Debian: apt-get install wrk util-linux), 2 cores or more, python3 with
# venv and npm (as languages.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
RUNS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is missing: apt-get install util-linux" >&2; exit 1; }

. benches/hello-app.sh
hello_app
. benches/measure.sh
mv "$work/app" "$work/hello"
for lang in python js; do
  echo "== $lang: micros new, build" >&2
  target/release/micros new "$work/$lang" --lang "$lang" 2>/dev/null
  target/release/micros build "$work/$lang" >"$work/$lang-build.log" 2>&1 \
    || { cat "$work/$lang-build.log" >&2; exit 1; }
done

# Requests/s of one wrk run against the URL $1 with $2 connections.
rps_of() {
  wrk -t1 -c"$2" -d"${SECONDS_PER_RUN}s" "$1/" | awk '/Requests\/sec/ { print $2 }'
}

declare -A ONE TWO
for app in hello python js; do
  # Each process its own copy of the app: its own state folder, as separate servers would have.
  cp -a "$work/$app" "$work/$app-b"
  target/release/micros check "$work/$app" 2>/dev/null
  target/release/micros check "$work/$app-b" 2>/dev/null
  for run in $(seq 1 "$RUNS"); do
    echo "== $app, run $run/$RUNS: one process" >&2
    start "$work/one.log" target/release/micros up "$work/$app" --listen 127.0.0.1:0
    ONE[$app]+="$(rps_of "$URL" 32)"$'\n'
    kill "$PID"; wait "$PID" 2>/dev/null || true
    echo "== $app, run $run/$RUNS: two processes, a core each" >&2
    start "$work/a.log" taskset -c 0 target/release/micros up "$work/$app" --listen 127.0.0.1:0
    pid_a=$PID url_a=$URL
    start "$work/b.log" taskset -c 1 target/release/micros up "$work/$app-b" --listen 127.0.0.1:0
    pid_b=$PID url_b=$URL
    rps_of "$url_a" 16 >"$work/rps-a" &
    rps_b=$(rps_of "$url_b" 16)
    wait $!
    TWO[$app]+="$(awk -v a="$(cat "$work/rps-a")" -v b="$rps_b" 'BEGIN { printf "%.2f", a + b }')"$'\n'
    kill "$pid_a" "$pid_b"; wait "$pid_a" "$pid_b" 2>/dev/null || true
  done
done

median() { sort -g | sed -n "$(( (RUNS + 1) / 2 ))p"; }
echo
echo "GET / requests/s, wrk -t1 -d${SECONDS_PER_RUN}s, median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-8s | %22s | %26s | %5s |\n' Micro "one process (-c32)" "two, a core each (2x -c16)" gain
printf '|%s|%s|%s|%s|\n' ---------- ------------------------ ---------------------------- -------
for app in hello python js; do
  one=$(printf '%s' "${ONE[$app]}" | median)
  two=$(printf '%s' "${TWO[$app]}" | median)
  printf '| %-8s | %22s | %26s | %5s |\n' "$app" "$one" "$two" \
    "$(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.2fx", a / b }')"
done
