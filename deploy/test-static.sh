#!/usr/bin/env bash
# The static binary in a clean root: serves predictions from a directory that holds nothing
# but the binary, the model and /etc/passwd (no libc, no shell, no loader), run the way the
# container image, the KServe runtime and the Kubernetes Deployment run it.
#
#   deploy/test-static.sh [BINARY]      (default target/static/onnx-serve, from build-static.sh)
#
# Needs root (chroot), unshare, ip, curl and python3 (for JSON only). Prints one line per
# check and exits non-zero when any fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Run everything in new network and PID namespaces: a private loopback, so that port 8080
# cannot clash with anything else on the machine, and every process started here dies
# with the test.
if [ -z "${ONNX_SERVE_TEST_NAMESPACES:-}" ]; then
    exec unshare --net --pid --mount-proc --fork --kill-child \
        env ONNX_SERVE_TEST_NAMESPACES=1 bash "$0" "$@"
fi
ip link set lo up

binary=${1:-${CARGO_TARGET_DIR:-target}/static/onnx-serve}
[ -f "$binary" ] || { echo "no binary at $binary: run deploy/build-static.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
base=http://127.0.0.1:8080
passed=0
failed=0

ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...: runs the command, counts the result
    local description=$1
    shift
    if "$@"; then ok "$description"; else not_ok "$description"; fi
}

# The image layout (the same script the Dockerfile runs), and `inspect` run from it.
echo "# image layout"
if bash deploy/build-image-layout.sh --binary "$binary" "$rootfs" > "$work/layout.log" 2>&1; then
    ok "the image layout builds and 'onnx-serve inspect --model /mnt/models' runs in it"
else
    cat "$work/layout.log"
    not_ok "the image layout builds and 'onnx-serve inspect --model /mnt/models' runs in it"
    exit 1
fi

# The final stage of the Dockerfile: its USER, ENV and HEALTHCHECK command, one per line
# (ENV as NAME=VALUE words, the HEALTHCHECK as its exec-form arguments).
dockerfile_config() {
    python3 - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
final = lines[max(i for i, l in enumerate(lines) if l.upper().startswith("FROM ")):]
for line in final:
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word == "USER":
        print("USER", rest.strip())
    elif word == "ENV":
        print("ENV", rest.strip())
    elif word == "HEALTHCHECK":
        print("HEALTHCHECK", " ".join(json.loads(rest.split("CMD", 1)[1])))
PY
}
config=$(dockerfile_config Dockerfile)
image_user=$(sed -n 's/^USER //p' <<< "$config")
read -r -a image_env <<< "$(sed -n 's/^ENV //p' <<< "$config")"
read -r -a image_healthcheck <<< "$(sed -n 's/^HEALTHCHECK //p' <<< "$config")"
echo "# the Dockerfile's USER $image_user, ENV ${image_env[*]}"

server_pid=
# start_server ARGS...: starts the binary from the layout as the image's user, with only the
# image's environment, and waits until /readyz answers 200.
start_server() {
    env -i "${image_env[@]}" "$(command -v chroot)" --userspec="$image_user" "$rootfs" \
        /usr/local/bin/onnx-serve "$@" > "$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then return 0; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "the server did not become ready; its log:"
    cat "$work/server.log"
    return 1
}

# stop_server: SIGTERM, and the exit code must be 0 (a clean drain).
stop_server() {
    kill -TERM "$server_pid"
    local code=0
    wait "$server_pid" || code=$?
    server_pid=
    [ "$code" -eq 0 ] || { echo "exit code $code; log:"; cat "$work/server.log"; return 1; }
}

# predicts_a_two: POST /predict with the fixture image of a 2; expects 10 probabilities
# that add up to 1, the largest for class 2.
predicts_a_two() {
    local answer
    answer=$(curl -fsS --data-binary @tests/fixtures/digit.json "$base/predict") || return 1
    python3 - "$answer" <<'PY'
import json, sys
outputs = json.loads(sys.argv[1])["outputs"]
assert len(outputs) == 1, outputs
row = outputs[0]
assert len(row) == 10, row
assert abs(sum(row) - 1) < 1e-3, row
assert max(range(10), key=row.__getitem__) == 2, row
print(f"#   probabilities {['%.3f' % p for p in row]}")
PY
}

answers_200() { curl -fsS -o /dev/null "$base$1"; }

runs_as() { [ "$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")" = "$1" ]; }

model_name_is() {
    local summary
    summary=$(curl -fsS "$base/") || return 1
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["name"] != sys.argv[2])' \
        "$summary" "$1"
}

# manifest_args FILE: the `- --flag=value` container arguments in a manifest, with KServe's
# {{.Name}} replaced by "digits" (the InferenceService name it stands for).
manifest_args() {
    sed -n 's/^ *- *"\{0,1\}\(--[a-z-]*=[^"]*\)"\{0,1\} *$/\1/p' "$1" | sed 's/{{\.Name}}/digits/'
}

# manifest_probe_paths FILE: the httpGet paths of its probes.
manifest_probe_paths() { sed -n 's/^ *path: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$1"; }

echo "# as the container image runs it (no arguments)"
if start_server; then
    check "GET /healthz answers 200" answers_200 /healthz
    check "POST /predict answers 10 probabilities, the largest for 2" predicts_a_two
    check "the server runs as the image's user ($image_user)" runs_as "${image_user%%:*}"
    check "the Dockerfile's HEALTHCHECK (${image_healthcheck[*]}) exits 0 in the image" \
        env -i "${image_env[@]}" "$(command -v chroot)" --userspec="$image_user" "$rootfs" \
        "${image_healthcheck[@]}"
    check "SIGTERM drains and exits 0" stop_server
    check "the HEALTHCHECK exits non-zero once the server is gone" \
        bash -c '! env -i "$@" 2>/dev/null' _ "${image_env[@]}" "$(command -v chroot)" \
        --userspec="$image_user" "$rootfs" "${image_healthcheck[@]}"
else
    not_ok "the server starts from the image layout"
fi

# A binary built with the model inside it (--features embed-model): in a root that holds no
# model at all, it serves that one; --model still wins.
if env -i "$(command -v chroot)" --userspec="$image_user" "$rootfs" \
    /usr/local/bin/onnx-serve inspect > "$work/inspect.json" 2> "$work/inspect.log"; then
    embedded() {
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
sys.exit(not (d["model"].startswith("the binary (built from ") and d["inputs"][0]["name"] == "input"))' \
            "$work/inspect.json"
    }
    check "with no --model, the model built into the binary is the one served" embedded
    overridden() {
        env -i "$(command -v chroot)" --userspec="$image_user" "$rootfs" \
            /usr/local/bin/onnx-serve inspect --model /mnt/models 2>/dev/null \
            | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["model"] != "/mnt/models/model.onnx")'
    }
    check "--model wins over the model built into the binary" overridden
else
    echo "# no model built into this binary: $(tail -1 "$work/inspect.log")"
fi

for manifest in deploy/kserve/cluster-serving-runtime.yaml deploy/k8s/deployment.yaml; do
    mapfile -t args < <(manifest_args "$manifest")
    echo "# with the arguments of $manifest: ${args[*]}"
    if start_server "${args[@]}"; then
        for path in $(manifest_probe_paths "$manifest"); do
            check "probe path $path answers 200" answers_200 "$path"
        done
        if [ "$manifest" = deploy/kserve/cluster-serving-runtime.yaml ]; then
            check "the model is named after the InferenceService (--model-name={{.Name}})" \
                model_name_is digits
        fi
        check "POST /predict answers 10 probabilities, the largest for 2" predicts_a_two
        check "SIGTERM drains and exits 0" stop_server
    else
        not_ok "the server starts with the arguments of $manifest"
    fi
done

echo "static binary in a clean root: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
