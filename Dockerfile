# Multi-stage build: compile in the Rust image, run as a non-root user in a slim image.
#   docker build -t archiveinterface .
#   docker run -p 8080:8080 -v archive-data:/srv/archive archiveinterface
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin archiveinterface

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /srv/archive --shell /usr/sbin/nologin archive \
 && install -d -o archive -g archive /srv/archive
COPY --from=build /src/target/release/archiveinterface /usr/local/bin/archiveinterface
USER archive
VOLUME ["/srv/archive"]
ENV ARCHIVEINTERFACE_ADDRESS=0.0.0.0 \
    ARCHIVEINTERFACE_PORT=8080 \
    ARCHIVEINTERFACE_PREFIX=/srv/archive
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/ || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/archiveinterface"]
