#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo fuzz, libFuzzer), each run for a bounded time; a crash
# fails CI and leaves its input in fuzz/artifacts/TARGET/, to become a regression test.
#
# cargo fuzz needs nightly compiler flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1 (no nightly can be fetched here). No sanitizer: the code under test
# is safe Rust, and what the fuzzer looks for is panics, overflows, stack overflows and
# runaway allocations, which libFuzzer catches without one.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-45}"
CARGO_FUZZ_VERSION=0.13.1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1
# One cargo invocation builds every target (tract is compiled once for them).
cargo fuzz build --sanitizer none
for target in json_tensor binary_v2 routes image_body; do
    mkdir -p "corpus/$target"
    # Seeds: the committed regression inputs (if any) and a few valid requests.
    if [ -d "regressions/$target" ]; then
        cp -n "regressions/$target"/* "corpus/$target"/ 2>/dev/null || true
    fi
    cargo fuzz run --sanitizer none "$target" "corpus/$target" seeds/"$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        2>&1 | tail -n 15
done
