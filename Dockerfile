# syntax=docker/dockerfile:1
#
# One image for every role: the role is the argument.
#   docker build -t switchboard:0.1.0 .
#   docker run --rm -p 3000:3000 -p 9090:9090 switchboard:0.1.0            # standalone
#   docker run ... switchboard:0.1.0 gateway                                # cluster gateway
#   docker run ... switchboard:0.1.0 router                                 # cluster room router
# Settings come from SWITCHBOARD_* variables (docs/configuration.md).
#
# Layers: the dependencies are built from the manifests alone (stub sources),
# so a change to the code rebuilds only the workspace's own crates.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- 1. The workspace's manifests and stub sources, nothing else ------------
# Its output changes only when a Cargo.toml or Cargo.lock does, so the
# dependency layer below stays cached across code changes (COPY --from is
# cached by content).
FROM ${RUST_IMAGE} AS manifests
WORKDIR /src
COPY . .
# Keep Cargo.toml and Cargo.lock; every crate gets an empty lib.rs, a
# `fn main() {}` main.rs and a `fn main() {}` build.rs where it has the real
# one (a stub build script, so that the build-dependencies are built here
# too; the real one runs in the final build).
RUN set -eu; \
    for dir in crates/*/; do \
      [ -f "${dir}Cargo.toml" ] || continue; \
      has_lib=0; has_main=0; has_build=0; \
      [ -f "${dir}src/lib.rs" ] && has_lib=1; \
      [ -f "${dir}src/main.rs" ] && has_main=1; \
      [ -f "${dir}build.rs" ] && has_build=1; \
      find "$dir" -mindepth 1 -maxdepth 1 ! -name Cargo.toml -exec rm -rf {} +; \
      mkdir -p "${dir}src"; \
      [ "$has_lib" = 1 ] && : > "${dir}src/lib.rs"; \
      [ "$has_main" = 1 ] && echo 'fn main() {}' > "${dir}src/main.rs"; \
      [ "$has_build" = 1 ] && echo 'fn main() {}' > "${dir}build.rs"; \
      true; \
    done; \
    find . -mindepth 1 -maxdepth 1 ! -name Cargo.toml ! -name Cargo.lock ! -name crates -exec rm -rf {} +

# --- 2. Build ---------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies only (cached while the manifests stay the same).
COPY --from=manifests /src/ ./
RUN cargo build --release --locked -p switchboard
# The real sources. Their modification times may be older than the stubs'
# build, so they are touched: cargo then rebuilds every workspace crate
# instead of keeping a stub.
COPY . .
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p switchboard \
 && install -D -m 0755 target/release/switchboard /out/switchboard \
 && /out/switchboard --version | grep -q '^switchboard '

# --- 3. Runtime: the binary, a non-root user, nothing else -------------------
# debian-slim rather than distroless: the Kubernetes preStop hook runs
# `sleep` (docs/operations.md), which needs the binary in the image. The
# switchboard binary links only libc, libm and libgcc_s (no OpenSSL).
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Socket.IO-compatible realtime server: standalone, cluster gateway or router" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin switchboard
COPY --from=builder /out/switchboard /usr/local/bin/switchboard
USER 10001:10001
# clients (Socket.IO, server API), admin (/metrics, /healthz, /readyz), router gRPC
EXPOSE 3000 9090 50051
ENTRYPOINT ["switchboard"]
