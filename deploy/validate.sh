#!/usr/bin/env bash
# Offline checks of the deployment files; no cluster and no container engine needed.
#
#   deploy/validate.sh
#
# 1. deploy/validate.py: the Kubernetes manifests against the Kubernetes schemas and the
#    KServe ones against KServe's API models, strictly (an unknown field fails); the
#    manifests' agreement with each other and with the binary; the Dockerfile's final stage;
#    and a self-test that planted typos are caught.
# 2. hadolint on the Dockerfile.
# 3. systemd-analyze verify on deploy/onnx-serve.service, where any warning fails.
# Python packages go to a venv under target/ (see deploy/requirements*.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${CARGO_TARGET_DIR:-target}/deploy-venv
pip_install() { "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_install -r deploy/requirements.txt -c deploy/constraints.txt
pip_install --no-deps -r deploy/requirements-nodeps.txt -c deploy/constraints.txt

echo "# manifests and Dockerfile (deploy/validate.py)"
"$venv/bin/python" deploy/validate.py

echo "# hadolint"
"$venv/bin/hadolint" Dockerfile
echo "ok   hadolint Dockerfile"
# The linter must be live: a Dockerfile with a floating tag and an unpinned apt-get fails.
if printf 'FROM debian:latest\nRUN apt-get install curl\n' | "$venv/bin/hadolint" - > /dev/null; then
    echo "FAIL hadolint accepted a Dockerfile with known mistakes"
    exit 1
fi
echo "ok   hadolint refuses a Dockerfile with known mistakes"

echo "# systemd unit"
if ! command -v systemd-analyze > /dev/null; then
    apt-get install -y --no-install-recommends systemd > /dev/null
fi
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
# verify_unit FILE: systemd-analyze verify, where any message (an unknown key, a value it
# cannot parse: systemd only warns and ignores them) is a failure. ExecStart must name an
# executable on this machine, so it is pointed at a stand-in.
verify_unit() {
    local copy output
    copy=$unit_dir/$(basename "$1")
    sed "s#^ExecStart=/usr/local/bin/onnx-serve#ExecStart=$(command -v true)#" "$1" > "$copy"
    output=$(systemd-analyze verify --man=no "$copy" 2>&1) || { echo "$output"; return 1; }
    [ -z "$output" ] || { echo "$output"; return 1; }
}
verify_unit deploy/onnx-serve.service
echo "ok   systemd-analyze verify deploy/onnx-serve.service"
sed 's/^ProtectHome=yes/ProtectHom=yes/' deploy/onnx-serve.service > "$unit_dir/typo.service"
if verify_unit "$unit_dir/typo.service" > /dev/null; then
    echo "FAIL systemd-analyze verify accepted a misspelt key"
    exit 1
fi
echo "ok   systemd-analyze verify refuses a misspelt key"
