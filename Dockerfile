# syntax=docker/dockerfile:1
#
# onnx-serve in a container: the fully static binary on an empty base image.
#
#   docker build -t onnx-serve .                                   # the bundled digits model
#   docker build --build-arg MODEL=models/mine.onnx -t mine .      # a model from this directory
#   docker run --rm -p 8080:8080 onnx-serve
#   docker run --rm -p 8080:8080 -v "$PWD/models:/mnt/models:ro" onnx-serve   # a mounted model
#
# The image holds only /usr/local/bin/onnx-serve, /mnt/models/model.onnx and /etc/passwd +
# /etc/group: deploy/build-image-layout.sh builds exactly that tree, and deploy/test-static.sh
# serves from it in a chroot with this file's USER, ENV and HEALTHCHECK (no engine needed).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
ARG MODEL=model.onnx
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/build-static.sh \
    && deploy/build-image-layout.sh --no-run --model "$MODEL" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# 65532 is "nonroot" in /etc/passwd; numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
ENV ONNX_SERVE_HOST=0.0.0.0 ONNX_SERVE_PORT=8080 ONNX_SERVE_MODEL=/mnt/models
EXPOSE 8080
# No shell or curl in the image: the binary probes itself (GET /healthz on $ONNX_SERVE_PORT).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/onnx-serve", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/onnx-serve"]
