# Peregrine's container image: built in a full Rust image, run from a slim Debian one as a
# non-root user. Build: docker build -t peregrine:0.1.0 .
# Run: docker run -p 8000:8000 -e DATABASE_URL=postgres://… peregrine:0.1.0

FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY examples examples
# A workspace member (the benchmarks' yardstick): cargo reads every member to load the workspace.
COPY bench/minimal bench/minimal
RUN cargo build --release --locked -p peregrine \
    && install -m 0755 target/release/peregrine /usr/local/bin/peregrine

FROM debian:bookworm-slim
# ca-certificates: the trusted roots for sslrootcert=system (managed PostgreSQL services).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin peregrine \
    && install -d -o peregrine -g peregrine -m 0750 /data
COPY --from=build /usr/local/bin/peregrine /usr/local/bin/peregrine
USER 10001:10001
# The SQLite default (sqlite://peregrine.db) lands here; mount a volume to keep it.
WORKDIR /data
# Change PEREGRINE_HEALTH_URL with the port in PEREGRINE_BIND.
ENV PEREGRINE_BIND=0.0.0.0:8000 \
    PEREGRINE_HEALTH_URL=http://127.0.0.1:8000/healthz \
    PEREGRINE_LOG_FORMAT=json
EXPOSE 8000
# The image has no curl: the binary checks itself. /healthz answers while the process runs;
# readiness (/readyz, the database) is left to the orchestrator.
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
    CMD ["peregrine", "health", "--timeout", "3s"]
ENTRYPOINT ["peregrine"]
CMD ["serve"]
