# syntax=docker/dockerfile:1
# Always Online in a container: the server alone on its embedded store in
# /data, or a cluster node with AO_REDIS_URL (deploy/compose.yml runs two
# behind nginx). Build from the repository root:
#
#   docker build --build-arg AO_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) -t always-online .
#   docker run -p 3000:3000 -v ao-data:/data always-online
#   docker exec <container> always-online user create alice     # prints alice's token
#
# What was built and run on our machines, and what was not: deploy/README.md.

# The web demo (web/, bundled with esbuild), for the binary to embed.
FROM node:22-bookworm-slim AS web
WORKDIR /src
COPY clients/js/ clients/js/
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund
COPY web/ web/
RUN cd web && npm run build

# The release binary, on the official Rust image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/dist web/dist
# The commit `always-online --version` reports (.git is not in the context).
ARG AO_BUILD_COMMIT=unknown
ENV AO_BUILD_COMMIT=${AO_BUILD_COMMIT} CARGO_INCREMENTAL=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin always-online \
    && cp target/release/always-online /usr/local/bin/always-online \
    && mkdir /data

# The run stage: glibc, libgcc, CA certificates and nothing else (no shell),
# as the distroless image's non-root user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/always-online /usr/bin/always-online
COPY LICENSE /usr/share/doc/always-online/copyright
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
WORKDIR /data
ENV AO_DATA_DIR=/data AO_LISTEN=0.0.0.0:3000 NO_COLOR=1
VOLUME /data
EXPOSE 3000
# GET /readyz on the listen address: exit 0 when ready, else 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/always-online", "healthcheck"]
# SIGTERM drains within AO_SHUTDOWN_GRACE_MS (10 s); give `docker stop -t` more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/always-online"]
CMD ["serve"]
