#!/usr/bin/env bash
# Builds the fully static Linux binary: target x86_64-unknown-linux-musl, musl's libc linked
# in, no dynamic loader, so it runs on any x86-64 Linux with nothing installed.
#
#   deploy/build-static.sh [more `cargo build` arguments, e.g. --features embed-model]
#
# Builds with the `dist` profile (what ships: fat LTO, one codegen unit); PROFILE=release
# builds it quicker, as CI does, which checks what the binary needs, not its speed.
# Writes target/static/onnx-serve (stripped; $CARGO_TARGET_DIR is honoured), checks that it
# is statically linked, and prints its size.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
target_dir=${CARGO_TARGET_DIR:-target}
profile=${PROFILE:-dist}
dist=$target_dir/static

# The Rust standard library for the target (rustup's component; idempotent).
if ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

# tract-linalg assembles its x86-64 kernels (.S files, which include no libc header) with
# the target's C compiler, which the cc crate looks for as x86_64-linux-musl-gcc. Any
# gcc or clang assembles them, so musl-tools is not needed: use musl-gcc when it is
# installed, else the system's cc. (rustc links the musl target with its own bundled
# musl libc and start files.)
if [ -z "${CC_x86_64_unknown_linux_musl:-}" ] && ! command -v x86_64-linux-musl-gcc >/dev/null; then
    if command -v musl-gcc >/dev/null; then
        export CC_x86_64_unknown_linux_musl=musl-gcc
    else
        export CC_x86_64_unknown_linux_musl=cc
    fi
fi

cargo build --profile "$profile" --locked --target "$TARGET" "$@"

mkdir -p "$dist"
cp "$target_dir/$TARGET/$profile/onnx-serve" "$dist/onnx-serve"
strip "$dist/onnx-serve"

# Static means: no program interpreter (dynamic loader) and no shared library needed.
if readelf --program-headers "$dist/onnx-serve" | grep -q INTERP \
    || readelf --dynamic "$dist/onnx-serve" | grep -q NEEDED; then
    echo "FAIL: $dist/onnx-serve is dynamically linked:" >&2
    readelf --dynamic "$dist/onnx-serve" | grep NEEDED >&2 || true
    exit 1
fi
if command -v file >/dev/null; then file "$dist/onnx-serve"; fi
if command -v ldd >/dev/null; then
    # glibc's ldd says "statically linked" or "not a dynamic executable", and exits 1 for the latter.
    echo "ldd: $(ldd "$dist/onnx-serve" 2>&1 || true)"
fi
size=$(stat -c %s "$dist/onnx-serve")
echo "static binary: $dist/onnx-serve, $((size / 1024 / 1024)) MiB ($size bytes, stripped)"
