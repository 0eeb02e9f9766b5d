# syntax=docker/dockerfile:1
#
# Switchyard container image.
#
#   docker build -t switchyard:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 -e SWITCHYARD_ALLOW_UNAUTHENTICATED=true switchyard:0.1.0
#
# Build stage: the official Rust image on Debian 12 (bookworm), so the binary
# links against the same glibc as the distroless runtime below.
# The toolchain tag is pinned; bump it together with rust-version in Cargo.toml.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-slim-bookworm AS builder

WORKDIR /build

# Only the files the build needs are in the context (see .dockerignore).
COPY . .

# The binary is a profile-guided build (scripts/pgo-build): an instrumented
# release build serves a checked training workload in front of the bench mock
# upstream, and a second release build uses the profile. It measured 14% more
# non-stream req/s (README, Performance) for about twice the build time. BOLT
# (Debian's bolt-15) then lays the linked binary out again from a profile of
# the same workload, and the result serves it once more, every answer checked.
# BuildKit cache mounts keep the crates.io registry and the target directory
# between builds; --out copies the binary out of the cached target directory.
# Every build inside runs with --locked: it fails rather than silently changing
# Cargo.lock.
# The runtime image has glibc but no libgcc_s (which Rust's std links for
# unwinding): ship Debian's copy next to the binary, and fail the build if the
# binary ever needs any other shared library.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends bolt-15=1:15.0.6-4+b1 \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target \
    scripts/pgo-build --out /out/rootfs/usr/local/bin/switchyard \
    && multiarch="$(gcc -print-multiarch)" \
    && install -D -m 0644 "/lib/${multiarch}/libgcc_s.so.1" "/out/rootfs/lib/${multiarch}/libgcc_s.so.1" \
    && if ldd /out/rootfs/usr/local/bin/switchyard | grep -vE 'linux-vdso|ld-linux|/lib(c|m|dl|pthread|rt|gcc_s)\.so'; then \
         echo "switchyard links a shared library the runtime image lacks (see above)" >&2; exit 1; \
       fi

# Runtime stage: distroless base without OpenSSL (glibc, CA certificates,
# tzdata, /etc/passwd with `nonroot`; no shell, no package manager, no curl).
# About 14 MB plus the binary, well under 30 MB. The :nonroot tag runs as
# uid/gid 65532. (gcr.io/distroless/cc-debian12:nonroot also works, without the
# libgcc_s copy, at ~10 MB more.)
FROM gcr.io/distroless/base-nossl-debian12:nonroot

LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="OpenAI-compatible LLM relay" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/rootfs/ /
# Default config: the built-in offline `mock` demo upstream only. Mount your
# own file (or a directory, or a Kubernetes ConfigMap) over /etc/switchyard.
COPY --chown=0:0 deploy/docker/switchyard.toml /etc/switchyard/switchyard.toml

ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml \
    SWITCHYARD_LISTEN=0.0.0.0:8080 \
    SWITCHYARD_LOG_FORMAT=json \
    SWITCHYARD_LOG=info

# Numeric uid/gid (= distroless `nonroot`) so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080

# No curl in the image: the binary checks itself (GET /healthz, exit 0 on 200).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/switchyard", "health", "--url", "http://127.0.0.1:8080/healthz"]

# SIGTERM: stop accepting, drain in-flight requests (server.shutdown_grace,
# default 30s), exit 0. Give `docker stop` a longer timeout: docker stop -t 35.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve"]
