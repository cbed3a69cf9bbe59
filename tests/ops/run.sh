#!/usr/bin/env bash
# The operations checks of tests/ops/test_ops.py against the binary `cargo test --release`
# builds: Prometheus' parser on /metrics, openapi-spec-validator and schemathesis on
# /openapi.json, headless Chromium (Debian's package) on /docs. Installs what they need:
# chromium through apt-get (as root) if it is missing, the Python packages into a venv
# under target/. Output (screenshot, schemathesis reports) in target/ops-test/.
#
#   tests/ops/run.sh [metrics|openapi|fuzz|docs ...]
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium > /dev/null; then
    install_chromium() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null; }
    install_chromium || { apt-get update -qq && install_chromium; }
fi

venv=${CARGO_TARGET_DIR:-target}/ops-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/ops/requirements.txt \
    -c tests/ops/constraints.txt
[ -x "${ONNX_SERVE_BIN:=target/release/onnx-serve}" ] || cargo build --release --locked
export ONNX_SERVE_BIN
"$venv/bin/python" tests/ops/test_ops.py "$@"
