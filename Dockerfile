# syntax=docker/dockerfile:1
# The pyralog node image: built on the official Rust image, run on Debian slim as a non-root
# user. `docker build -t pyralog:0.1.0 .`; README "Deploying" and deploy/kubernetes/.

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Pure-Rust protobuf (protox) and vendored C (zstd, aws-lc): nothing to install.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pyralog \
    && install -m 0755 target/release/pyralog /usr/local/bin/pyralog

FROM debian:bookworm-slim AS runtime
# CA certificates for TLS to object stores; /bin/sh stays (the Kubernetes manifests use it to
# derive a pod's node id from its ordinal).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pyralog \
    && useradd --system --uid 10001 --gid pyralog --home-dir /var/lib/pyralog \
        --shell /usr/sbin/nologin pyralog \
    && install -d -o pyralog -g pyralog -m 0750 /var/lib/pyralog \
    && install -d -m 0755 /etc/pyralog
COPY --from=builder /usr/local/bin/pyralog /usr/local/bin/pyralog
# A single plaintext node: replace it (a mounted file) for anything but a trial.
COPY deploy/docker/pyralog.toml /etc/pyralog/pyralog.toml
USER 10001:10001
WORKDIR /var/lib/pyralog
VOLUME ["/var/lib/pyralog"]
# client (gRPC), metrics (HTTP), cluster (gRPC, node to node)
EXPOSE 7410 7411 7412
ENTRYPOINT ["pyralog", "serve", "--config", "/etc/pyralog/pyralog.toml"]
