#!/usr/bin/env bash
# nginx for tests/proxy.rs, from Debian's packages, unless it is already there. Only the
# binary is needed: the test runs it in the foreground with its own configuration, so the
# service the package may try to start is not used.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx >/dev/null
/usr/sbin/nginx -v
