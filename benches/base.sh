#!/usr/bin/env bash
# Base throughput from a guest: the `deta` guest (guests/deta) sends each request on to
# database.deta.sh as Deta's SDKs do, and micros answers it from the app's SQLite store. Put (one
# new item per request, each committed and synced before its 207), get and query are driven with
# wrk in turn, beside the hello guest on the same server as the baseline of the same run.
# Usage: ./benches/base.sh [SECONDS] [CONNECTIONS]   (defaults: 5 s, 8 connections)
# Needs: wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
CONNECTIONS=${2:-8}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

. benches/hello-app.sh
hello_app
cargo build --release --quiet --target wasm32-wasip2 --manifest-path guests/Cargo.toml \
  -p deta --target-dir target/bench-guests
mkdir -p "$work/app/data"
cp target/bench-guests/wasm32-wasip2/release/deta.wasm "$work/app/data/deta.wasm"
cat > "$work/app/Spacefile.toml" <<'TOML'
v = 1
[[micros]]
name = "data"
src = "data"
component = "deta.wasm"
primary = true
public = true

[[micros]]
name = "web"
src = "web"
component = "hello.wasm"
path = "/hello"
public = true
TOML
RUST_LOG=warn target/release/micros up "$work/app" --listen 127.0.0.1:0 --state-dir "$work/state" \
  2>"$work/log" &
for _ in $(seq 1 2000); do
  URL=$(grep -o -m1 'http://[0-9.:]*' "$work/log" || true)
  if [ -n "$URL" ] && curl -fs -o /dev/null "$URL/hello/"; then break; fi
  sleep 0.005
done
[ -n "$URL" ] || { cat "$work/log" >&2; exit 1; }

cat > "$work/put.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local body = '{"items":[{"key":"k' .. string.format("%08d", counter) .. '","n":' .. counter .. ',"note":"an item of about a hundred bytes, as a small app stores them"}]}'
  return wrk.format("PUT", "/bench/items", {["Content-Type"] = "application/json"}, body)
end
LUA
cat > "$work/get.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  -- From k00000002: wrk makes (and never sends) one request of the put script at its start.
  return wrk.format("GET", "/bench/items/k" .. string.format("%08d", counter % 500 + 2))
end
LUA
cat > "$work/query.lua" <<'LUA'
request = function()
  return wrk.format("POST", "/bench/query", {["Content-Type"] = "application/json"},
    '{"query":[{"n?lt":50}],"limit":10}')
end
LUA
cat > "$work/scan.lua" <<'LUA'
request = function()
  return wrk.format("POST", "/bench/query", {["Content-Type"] = "application/json"},
    '{"query":[{"n?lt":0}],"limit":10}')
end
LUA

# Drives PATH with wrk (and a Lua script, if given); prints requests/s, p50 and p99.
drive() {
  local out
  if [ -n "${2:-}" ]; then
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$2" "$URL$1")
  else
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency "$URL$1")
  fi
  local errors; errors=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  echo "$(echo "$out" | awk '/Requests\/sec/ { print $2 }') \
$(echo "$out" | awk '$1 == "50%" { print $2 }') $(echo "$out" | awk '$1 == "99%" { print $2 }') \
${errors:-0}"
}

hello=$(drive /hello/)
put=$(drive / "$work/put.lua")
items=$(awk -v r="${put%% *}" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%d", r * s }')
get=$(drive / "$work/get.lua")
query=$(drive / "$work/query.lua")
scan=$(drive / "$work/scan.lua")

echo
echo "wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s, $(nproc) cores, $(date -u +%F); about $items items in the base after the put run"
printf '| %-40s | %10s | %8s | %8s | %8s | %8s |\n' request requests/s p50 p99 non-2xx "vs hello"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" ------------ ---------- ---------- ---------- ----------
base=$(echo "$hello" | awk '{ print $1 }')
for row in "hello (no data: the baseline)|$hello" "put one new item (synced)|$put" \
  "get an item|$get" "query, first 10 matches (early)|$query" \
  "query matching nothing (scans the base)|$scan"; do
  name=${row%%|*}; set -- ${row#*|}
  printf '| %-40s | %10s | %8s | %8s | %8s | %7.2fx |\n' "$name" "$1" "$2" "$3" "$4" \
    "$(awk -v a="$1" -v b="$base" 'BEGIN { print a / b }')"
done
