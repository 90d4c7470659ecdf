#!/usr/bin/env bash
# Server benchmark (issue #21): what hosting many apps costs (idle memory and start time with 1,
# 20 and 100 hello apps, and requests/s to one app with 1 and with 100 loaded), how long a push
# of the demo app takes to serving (compile cache cold and warm), and how many requests fail
# while a release is pushed and rolled back under load (wrk throughout).
# Usage: ./benches/server.sh [SECONDS] [APPS]   (defaults: 10 s of wrk per figure, 100 apps)
# Needs: wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
APPS=${2:-100}
CONNECTIONS=32
RUNS=1
RUNS_COMPARED=3
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

. benches/hello-app.sh
hello_app
. benches/measure.sh
MICROS=$PWD/target/release/micros
export MICROS_CONFIG="$work/servers.toml"
STATE="$work/state"

# Starts `micros server` on $STATE; sets PID, URL, PORT and START_MS (process start to the first
# 200 from app `$1`, or to the API's answer if no app is named), and TOKEN on the first start.
start_server() {
  local app=${1:-}
  local log; log="$work/server.$(date +%s%N).log"
  local t0; t0=$(date +%s%N)
  "$MICROS" server --state-dir "$STATE" --listen 127.0.0.1:0 2>"$log" &
  PID=$!
  URL=
  for _ in $(seq 1 4000); do
    URL=$(grep -o -m1 'http://[0-9.:]*' "$log" || true)
    if [ -n "$URL" ]; then
      PORT=${URL##*:}
      if [ -n "$app" ]; then
        curl -fs -o /dev/null -H "Host: $app.localhost:$PORT" "$URL/" && break
      else
        curl -s -o /dev/null "$URL/__micros/v1/whoami" && break
      fi
    fi
    sleep 0.005
  done
  START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  local token; token=$(grep -m1 -E '^    [A-Za-z0-9]{40}$' "$log" | tr -d ' ' || true)
  if [ -n "$token" ]; then TOKEN=$token; fi
  # Each start listens on a new port: the CLI's default server follows it.
  "$MICROS" login "$URL" --token "$TOKEN" 2>/dev/null
}

stop_server() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

# Pushes the hello app as `$1` (no build: the component is built already).
push_hello() { "$MICROS" push "$work/app" --app "$1" --no-build 2>/dev/null; }

# wrk on app `$1` for SECONDS_PER_RUN; prints "rps non2xx socket_errors".
wrk_app() {
  local out
  out=$(wrk -t1 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" -H "Host: $1.localhost:$PORT" "$URL/")
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  local bad; bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
  local errors; errors=$(echo "$out" | awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }')
  echo "$rps ${bad:-0} ${errors:-0}"
}

echo "== first start, login" >&2
start_server
EMPTY_RSS=$(rss_mib "$PID")

declare -A RSS STARTS
loaded=0
for count in 1 20 "$APPS"; do
  echo "== $count app(s)" >&2
  while [ "$loaded" -lt "$count" ]; do
    loaded=$((loaded + 1))
    push_hello "app$loaded"
  done
  stop_server
  if [ "$count" = 1 ]; then cp -r "$STATE" "$work/one"; fi
  start_server "app$count"
  STARTS[$count]=$START_MS
  sleep 1
  RSS[$count]=$(rss_mib "$PID")
done

# Requests/s to one app with 1 and with $APPS loaded: both servers run, driven in turn, so the
# machine's drift falls on both alike.
echo "== requests/s to app1, 1 and $APPS apps loaded, $RUNS_COMPARED rounds" >&2
MANY_PID=$PID; MANY_URL=$URL; MANY_PORT=$PORT
STATE="$work/one" start_server app1
ONE_PID=$PID; ONE_URL=$URL; ONE_PORT=$PORT
ONE_ROWS=; MANY_ROWS=
for _ in $(seq 1 "$RUNS_COMPARED"); do
  PID=$ONE_PID; URL=$ONE_URL; PORT=$ONE_PORT
  ONE_ROWS+="$(wrk_app app1 | awk '{ print $1 }')"$'\n'
  PID=$MANY_PID; URL=$MANY_URL; PORT=$MANY_PORT
  MANY_ROWS+="$(wrk_app app1 | awk '{ print $1 }')"$'\n'
done
kill "$ONE_PID" 2>/dev/null || true
RPS_ONE=$(printf '%s' "$ONE_ROWS" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
RPS_MANY=$(printf '%s' "$MANY_ROWS" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
PID=$MANY_PID; URL=$MANY_URL; PORT=$MANY_PORT
"$MICROS" login "$URL" --token "$TOKEN" 2>/dev/null

echo "== pushes and a rollback while wrk drives app1" >&2
(
  sleep 1
  for _ in 1 2 3; do push_hello app1; sleep 0.5; done
  "$MICROS" rollback app1 2>/dev/null
) &
SWAPPER=$!
read -r RPS_SWAP BAD_SWAP ERR_SWAP <<<"$(wrk_app app1)"
wait "$SWAPPER"

echo "== the demo app: build, then push with the compile cache cold and warm" >&2
"$MICROS" build examples/demo >/dev/null 2>&1
t0=$(date +%s%N)
"$MICROS" push examples/demo --app demo --no-build 2>/dev/null
COLD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
t0=$(date +%s%N)
"$MICROS" push examples/demo --app demo --no-build 2>/dev/null
WARM_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
stop_server

echo
echo "micros server, $(nproc) cores, $(date -u +%F); wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s"
echo "| apps loaded | idle RSS MiB | start to first 200 of the last app, ms |"
echo "|---|---|---|"
echo "| 0 (first start) | $EMPTY_RSS | - |"
for count in 1 20 "$APPS"; do
  echo "| $count | ${RSS[$count]} | ${STARTS[$count]} |"
done
awk -v a="${RSS[$APPS]}" -v b="${RSS[1]}" -v n="$APPS" -v s="${STARTS[$APPS]}" -v t="${STARTS[1]}" \
  'BEGIN { printf "each extra idle app: %.2f MiB and %.1f ms of start\n", (a - b) / (n - 1), (s - t) / (n - 1) }'
awk -v a="$RPS_MANY" -v b="$RPS_ONE" -v n="$APPS" -v r="$RUNS_COMPARED" \
  'BEGIN { printf "requests/s to one app, median of %d rounds in turn: %s with 1 loaded, %s with %d loaded (%.3fx)\n", r, b, a, n, a / b }'
echo "during 3 pushes and a rollback of that app: $RPS_SWAP requests/s, $BAD_SWAP non-2xx, $ERR_SWAP socket errors"
echo "push of the demo app to serving: ${COLD_MS} ms with the compile cache cold, ${WARM_MS} ms warm"
