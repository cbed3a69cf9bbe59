#!/usr/bin/env bash
# Builds the container image's file system without a container engine: the same files the
# Dockerfile's final `FROM scratch` stage holds, in a directory.
#
#   deploy/build-image-layout.sh [--binary FILE] [--model FILE] [--no-run] ROOTFS
#
#   ROOTFS/usr/local/bin/onnx-serve   the static binary (default target/static/onnx-serve,
#                                     made by deploy/build-static.sh)
#   ROOTFS/mnt/models/model.onnx      the model (default: the bundled model.onnx); KServe
#                                     mounts its storage volume over /mnt/models
#   ROOTFS/etc/passwd, ROOTFS/etc/group   root and the unprivileged user 65532 "nonroot"
#
# Unless --no-run is given, it then runs `onnx-serve inspect` from the layout in a chroot
# as user 65532, which needs root. The Dockerfile runs this script with --no-run and copies
# ROOTFS into the image; deploy/test-static.sh serves from it.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${CARGO_TARGET_DIR:-target}/static/onnx-serve
model=model.onnx
run=yes
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --no-run) run=no; shift ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -ne 1 ]; then
    echo "usage: $0 [--binary FILE] [--model FILE] [--no-run] ROOTFS" >&2
    exit 2
fi
rootfs=$1
[ -f "$binary" ] || { echo "no binary at $binary: run deploy/build-static.sh first" >&2; exit 1; }
[ -f "$model" ] || { echo "no model at $model" >&2; exit 1; }

# Start from an empty directory so that nothing else can be in the layout.
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/mnt/models" "$rootfs/etc"
install -m 0755 "$binary" "$rootfs/usr/local/bin/onnx-serve"
install -m 0644 "$model" "$rootfs/mnt/models/model.onnx"
# The user the image runs as (USER 65532:65532, like distroless's "nonroot"); these two
# files only give the numbers names, for `ps` and for tools that look them up.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > "$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > "$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

echo "image layout in $rootfs:"
(cd "$rootfs" && find . -type f -printf '  /%P  %s bytes\n' | sort)

if [ "$run" = yes ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: skipping the chroot run (use --no-run to silence this)" >&2
        exit 0
    fi
    echo "chroot $rootfs as 65532: onnx-serve inspect --model /mnt/models"
    env -i "$(command -v chroot)" --userspec=65532:65532 "$rootfs" \
        /usr/local/bin/onnx-serve inspect --model /mnt/models
fi
