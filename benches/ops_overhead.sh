#!/usr/bin/env bash
# What metrics and access lines cost: requests/s of the digits model at 16 connections for
# five servers, started once and measured in turns: a build without this branch's metrics
# (BASE) without and with access lines, and this branch's build with metrics only, with
# text access lines, and with JSON ones. Access lines go to a file, as a service's would.
# A second bare server shows how far two identical servers differ: the noise floor.
#
#   cargo build --release
#   benches/ops_overhead.sh path/to/base/onnx-serve [target/release/onnx-serve]
#
# Each round runs every server once (wrk -t1 -c16), starting from a different one each
# round. A server's ratio in a round is its requests/s over the bare server's in the same
# round; the table gives the median ratio over the rounds and its quartiles, which shrug
# off other processes better than a ratio of medians would, and the median server CPU time
# per request (user + system, from /proc). Quote ratios from one run, on a quiet machine.
#
# BASE: the same server without the metrics, e.g. a release build of the branch's base
# commit. Environment: ROUNDS (15), DURATION seconds per run (3), CONNS (16), WORKERS
# (number of cores), PIN (1). Needs wrk (apt-get install wrk) and taskset.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?usage: $0 BASE_BINARY [NEW_BINARY]}
new=${2:-target/release/onnx-serve}
rounds=${ROUNDS:-15}
duration=${DURATION:-3}
conns=${CONNS:-16}
workers=${WORKERS:-$(nproc)}
# The servers on CPU 0 and wrk on CPU 1 (PIN=0: anywhere). Left to the scheduler, each run
# landed in one of two modes about 2x apart in requests/s, whatever the server, depending
# on where wrk and the busy threads met; pinned, a run measures the server's own cost.
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  server_cpu="taskset -c 0"
  wrk_cpu="taskset -c 1"
else
  server_cpu=""
  wrk_cpu=""
fi
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
# Access lines off the way docs/operations.md says: RUST_LOG=info,onnx_serve::access=warn.
quiet=info,onnx_serve::access=warn
configs=(
  "bare|$base|$quiet|"
  "bare-again|$base|$quiet|"
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
  RUST_LOG=$level $server_cpu "$binary" --model model.onnx --port 0 --workers "$workers" $flags 2>"$log" &
  pid[$name]=$!
  for _ in $(seq 300); do
    grep -q "listening on" "$log" 2>/dev/null && grep -q "ready" "$log" && break
    sleep 0.05
  done
  port[$name]=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "${port[$name]}" ] || { echo "$name did not start:"; cat "$log"; exit 1; }
  # Warm-up.
  BODY=tests/fixtures/digit.json $wrk_cpu wrk -t1 -c"$conns" -d2s -s "$lua" "http://127.0.0.1:${port[$name]}/predict" >/dev/null
done

# CPU time (user + system, in clock ticks) the server's process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# Each round measures every configuration once, starting from a different one each time;
# a configuration's ratio in a round is its rate over the bare server's rate in that round,
# so a disturbance that lasts a few seconds touches both sides of most ratios alike.
declare -A results cpu ratios
count=${#configs[@]}
for round in $(seq "$rounds"); do
  declare -A rate_of=()
  for k in $(seq 0 $((count - 1))); do
    config=${configs[$(((k + round) % count))]}
    name=${config%%|*}
    before=$(cpu_ticks "${pid[$name]}")
    line=$(BODY=tests/fixtures/digit.json $wrk_cpu wrk -t1 -c"$conns" -d"${duration}s" -s "$lua" \
      "http://127.0.0.1:${port[$name]}/predict" | grep '^BENCH')
    after=$(cpu_ticks "${pid[$name]}")
    read -r _ requests seconds errors <<<"$line"
    [ "$errors" = 0 ] || { echo "$name: $errors errors in round $round"; exit 1; }
    rate=$(awk -v r="$requests" -v s="$seconds" 'BEGIN { printf "%.0f", r / s }')
    us=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v r="$requests" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / r }')
    rate_of[$name]=$rate
    results[$name]+="$rate "
    cpu[$name]+="$us "
    echo "round $round $name: $rate req/s, $us us CPU/request" >&2
  done
  for config in "${configs[@]}"; do
    name=${config%%|*}
    ratios[$name]+="$(awk -v a="${rate_of[$name]}" -v b="${rate_of[bare]}" 'BEGIN { printf "%.4f", a / b }') "
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
quartiles() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { printf "%.3f-%.3f", a[int((NR + 3) / 4)], a[int((3 * NR + 3) / 4)] }'; }
bare_cpu=$(echo "${cpu[bare]}" | median)
echo
echo "digits model, wrk -t1 -c$conns -d${duration}s, $rounds rounds, --workers $workers, $(nproc) cores${server_cpu:+, server on CPU 0 and wrk on CPU 1}"
echo
echo "| configuration | median req/s | req/s ratio to bare (median of rounds) | quartiles | median server CPU/request | ratio |"
echo "|---|---:|---:|---:|---:|---:|"
for config in "${configs[@]}"; do
  name=${config%%|*}
  m=$(echo "${results[$name]}" | median)
  r=$(echo "${ratios[$name]}" | median)
  q=$(echo "${ratios[$name]}" | quartiles)
  c=$(echo "${cpu[$name]}" | median)
  awk -v n="$name" -v m="$m" -v r="$r" -v q="$q" -v c="$c" -v bc="$bare_cpu" \
    'BEGIN { printf "| %s | %.0f | %.3f | %s | %.1f us | %.3f |\n", n, m, r, q, c, c / bc }'
done
