# Sourced by load.sh and languages.sh: start a server and time its first 200, read its CPU and
# memory, drive it with wrk. Expects CONNECTIONS, RUNS and SECONDS_PER_RUN to be set.

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

# Drives URL (served by process PID) once with wrk; prints "rps p50_ms p99_ms cpu_us_per_request".
drive_once() {
  local before; before=$(cpu_seconds "$PID")
  local out; out=$(wrk -t1 -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" --latency "$URL/")
  local after; after=$(cpu_seconds "$PID")
  local requests; requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
  local p50; p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
  local p99; p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
  local cpu; cpu=$(awk -v a="$after" -v b="$before" -v n="$requests" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu"
}

# The median of each column of the rows on stdin (one run's "rps p50 p99 cpu" per line).
medians() {
  local rows; rows=$(cat)
  local count; count=$(echo "$rows" | wc -l)
  local medians=()
  for column in 1 2 3 4; do
    medians+=("$(echo "$rows" | awk -v c=$column '{ print $c }' | sort -g \
      | sed -n "$(( (count + 1) / 2 ))p")")
  done
  echo "${medians[*]}"
}

# Drives URL with wrk RUNS times in a row; prints the medians, as `drive_once` does one run.
drive() {
  for _ in $(seq 1 "$RUNS"); do drive_once; done | medians
}

# wrk prints latencies as 1.23ms, 456.00us or 1.02s: in milliseconds.
to_ms() {
  awk -v t="$1" 'BEGIN {
    if (t ~ /us$/) { sub(/us$/, "", t); printf "%.3f", t / 1000 }
    else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.3f", t }
    else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.3f", t * 1000 } }'
}
