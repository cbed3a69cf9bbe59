#!/usr/bin/env bash
# What metrics and access logging cost: requests/s of the digits model at 16 connections,
# for release builds of this branch and of a build without metrics (BASE), with access
# lines on and off, measured in alternation so that the machine's drift hits every
# configuration alike. Prints each configuration's median requests/s and server CPU time
# per request, and their ratios to the bare server's.
#
#   cargo build --release
#   benches/ops_overhead.sh path/to/base/onnx-serve [target/release/onnx-serve]
#
# BASE is the same server without this branch's metrics (e.g. a release build of its base
# commit). Environment: ROUNDS (5), DURATION seconds per run (10), CONNS (16), WORKERS
# (number of cores). Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?usage: $0 BASE_BINARY [NEW_BINARY]}
new=${2:-target/release/onnx-serve}
rounds=${ROUNDS:-5}
duration=${DURATION:-10}
conns=${CONNS:-16}
workers=${WORKERS:-$(nproc)}
lua=$(mktemp --suffix=.lua)
logs=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$lua" "$logs"' EXIT

# wrk's POST script: the body of $BODY, and one summary line at the end.
cat > "$lua" <<'EOF'
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  io.write(string.format("BENCH %d %.3f %d\n", summary.requests, summary.duration / 1e6,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

# name | binary | RUST_LOG | extra flags
# Access lines off the way the README says: RUST_LOG=info,onnx_serve::access=warn.
quiet=info,onnx_serve::access=warn
configs=(
  "bare|$base|$quiet|"
  "base+access-log|$base|info|"
  "metrics|$new|$quiet|"
  "metrics+access-log|$new|info|"
  "metrics+json-log|$new|info|--log-format json"
)

declare -A port pid
for config in "${configs[@]}"; do
  IFS='|' read -r name binary level flags <<<"$config"
  log="$logs/$name.log"
  # Access lines go to a file, as a service's would (not to a terminal).
  RUST_LOG=$level "$binary" --model model.onnx --port 0 --workers "$workers" $flags 2>"$log" &
  pid[$name]=$!
  for _ in $(seq 300); do
    grep -q "listening on" "$log" 2>/dev/null && grep -q "ready" "$log" && break
    sleep 0.05
  done
  port[$name]=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "${port[$name]}" ] || { echo "$name did not start:"; cat "$log"; exit 1; }
  # Warm-up.
  BODY=tests/fixtures/digit.json wrk -t1 -c"$conns" -d2s -s "$lua" "http://127.0.0.1:${port[$name]}/predict" >/dev/null
done

# CPU time (user + system, in clock ticks) the server's process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

declare -A results cpu
for round in $(seq "$rounds"); do
  for config in "${configs[@]}"; do
    name=${config%%|*}
    before=$(cpu_ticks "${pid[$name]}")
    line=$(BODY=tests/fixtures/digit.json wrk -t1 -c"$conns" -d"${duration}s" -s "$lua" \
      "http://127.0.0.1:${port[$name]}/predict" | grep '^BENCH')
    after=$(cpu_ticks "${pid[$name]}")
    read -r _ requests seconds errors <<<"$line"
    [ "$errors" = 0 ] || { echo "$name: $errors errors in round $round"; exit 1; }
    rate=$(awk -v r="$requests" -v s="$seconds" 'BEGIN { printf "%.0f", r / s }')
    us=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v r="$requests" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / r }')
    results[$name]+="$rate "
    cpu[$name]+="$us "
    echo "round $round $name: $rate req/s, $us us CPU/request" >&2
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
bare=$(echo "${results[bare]}" | median)
bare_cpu=$(echo "${cpu[bare]}" | median)
echo
echo "digits model, wrk -t1 -c$conns -d${duration}s, $rounds alternating rounds, --workers $workers, $(nproc) cores"
echo
echo "| configuration | median req/s | req/s ratio to bare | median server CPU/request | CPU ratio to bare |"
echo "|---|---:|---:|---:|---:|"
for config in "${configs[@]}"; do
  name=${config%%|*}
  m=$(echo "${results[$name]}" | median)
  c=$(echo "${cpu[$name]}" | median)
  awk -v n="$name" -v m="$m" -v b="$bare" -v c="$c" -v bc="$bare_cpu" \
    'BEGIN { printf "| %s | %.0f | %.3f | %.1f us | %.3f |\n", n, m, m / b, c, c / bc }'
done
