# syntax=docker/dockerfile:1
# thetazero in a container: build the binary with the same command as
# `cargo install`, then run it as an unprivileged user on a minimal image.
#
#   docker build -t thetazero .
#   docker run -d --name thetazero -p 8420:8420 -v thetazero-data:/var/lib/thetazero thetazero
#   docker logs thetazero        # the owner key, printed once on first start
#
# Confined sandbox workers need Landlock in the host kernel and a seccomp
# profile that allows the landlock_* system calls (Docker 23.0 and later,
# containerd 1.6 and later do by default). The server refuses to start
# otherwise and names what is missing; see the README's "Install" section.

FROM rust:1-slim-bookworm AS builder
# The data directory, made here so that the runtime image needs no shell.
RUN mkdir -p /out/var/lib/thetazero
WORKDIR /src
COPY . .
# The builder's one build command; CI runs exactly this line.
RUN cargo install --path crates/thetazero --locked --root /opt/thetazero

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /opt/thetazero/bin/thetazero /usr/local/bin/thetazero
COPY --from=builder --chown=65532:65532 /out/var/lib/thetazero /var/lib/thetazero
ENV THETAZERO_LISTEN=0.0.0.0:8420 \
    THETAZERO_METRICS_LISTEN=0.0.0.0:9420 \
    THETAZERO_DATA_DIR=/var/lib/thetazero \
    THETAZERO_LOG_FORMAT=json
USER 65532:65532
VOLUME ["/var/lib/thetazero"]
EXPOSE 8420 9420
# The runtime's stop signal; runs in flight get shutdown_grace_ms (8 s by
# default) to finish. For a longer grace, raise the runtime's stop timeout
# (`docker run --stop-timeout`, compose `stop_grace_period`, Kubernetes
# `terminationGracePeriodSeconds`) above it.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/thetazero", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/thetazero"]
CMD ["serve"]
