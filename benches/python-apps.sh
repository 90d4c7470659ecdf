#!/usr/bin/env bash
# Space-style Python apps against the Rust starter, in the same run: a FastAPI hello (ASGI) and a
# Flask hello (WSGI), each written as a Space app (YAML `Spacefile`, `requirements.txt`), brought
# over with `micros import` and built with componentize-py, and the Rust starter of `micros new`.
# `GET /` of each under wrk, served in turn: requests/s, p50/p99, CPU per request, one request at a
# time, and each ratio to the Rust starter.
# Usage: ./benches/python-apps.sh [SECONDS] [RUNS]   (defaults: 10 s, 3 runs; medians reported)
# Needs: wrk, python3 with venv (the build commands install the pinned componentize-py).
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

space_app() { # name, run, requirements, main.py
  mkdir -p "$work/$1/web"
  printf 'v: 0\nmicros:\n  - name: web\n    src: web\n    engine: python3.9\n    public: true\n    run: %s\n' "$2" > "$work/$1/Spacefile"
  printf '%s\n' "$3" > "$work/$1/web/requirements.txt"
  printf '%s\n' "$4" > "$work/$1/web/main.py"
  target/release/micros import "$work/$1" >/dev/null 2>&1
}
space_app fastapi "uvicorn main:app" "fastapi==0.115.12
pydantic==1.10.27" 'from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
app = FastAPI()

@app.get("/", response_class=PlainTextResponse)
async def hello():
    return "hello from FastAPI"'
space_app flask "gunicorn main:app" "flask" 'from flask import Flask
app = Flask(__name__)

@app.get("/")
def hello():
    return "hello from Flask"'
target/release/micros new "$work/rust" --lang rust 2>/dev/null

declare -A RESULT SINGLE
for app in rust fastapi flask; do
  echo "== $app: build" >&2
  if ! target/release/micros build "$work/$app" >"$work/$app-build.log" 2>&1; then
    cat "$work/$app-build.log" >&2
    exit 1
  fi
  echo "== $app: micros up, wrk" >&2
  start "$work/$app-up.log" target/release/micros up "$work/$app" --listen 127.0.0.1:0 --no-auth
  CONNECTIONS=32
  RESULT[$app]=$(drive)
  CONNECTIONS=1
  SINGLE[$app]=$(drive | awk '{ print $2 }')
  kill "$PID"; wait "$PID" 2>/dev/null || true
done

echo
echo "GET / of each app; wrk -t1 -c32 -d${SECONDS_PER_RUN}s (and -c1), median of $RUNS runs, $(nproc) cores, $(date -u +%F)"
printf '| %-8s | %10s | %8s | %8s | %10s | %11s |\n' app requests/s "p50 ms" "p99 ms" "CPU µs/req" "1 at a time"
printf '|%s|%s|%s|%s|%s|%s|\n' ---------- ------------ ---------- ---------- ------------ -------------
read -r base_rps _ _ base_cpu <<<"${RESULT[rust]}"
for app in rust fastapi flask; do
  read -r rps p50 p99 cpu <<<"${RESULT[$app]}"
  printf '| %-8s | %10s | %8s | %8s | %10s | %8s ms |\n' "$app" "$rps" "$p50" "$p99" "$cpu" "${SINGLE[$app]}"
done
echo
echo "ratios to the Rust starter (same run):"
for app in fastapi flask; do
  read -r rps _ _ cpu <<<"${RESULT[$app]}"
  awk -v l="$app" -v a="$rps" -v b="$base_rps" -v c="$cpu" -v d="$base_cpu" \
    'BEGIN { printf "  %-8s requests/s %.3fx, CPU per request %.1fx\n", l, a / b, c / d }'
done
