# syntax=docker/dockerfile:1
# The production image: the operator built without the dev cluster (the default
# `devcluster` feature), on distroless (glibc, no shell), running as 65532:65532.
#   docker build -t apikey-operator:0.1.0 .

FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and incremental artifacts between builds (BuildKit); the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features -p apikey-operator \
    && cp target/release/apikey-operator /apikey-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="apikey-operator" \
      org.opencontainers.image.description="Kubernetes operator that mints, stores, distributes and rotates API keys" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /apikey-operator /apikey-operator
USER 65532:65532
ENTRYPOINT ["/apikey-operator"]
CMD ["run"]
