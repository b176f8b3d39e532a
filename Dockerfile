# Build: the Swift toolchain image.
FROM swift:6.2-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
COPY openapi.yaml ./
RUN swift build -c release --product pigeon --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/pigeon" /usr/local/bin/pigeon

# Run: slim Debian with only what the binary links against.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsqlite3-0 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin pigeon \
    && mkdir -p /data && chown pigeon:pigeon /data
COPY --from=build /usr/local/bin/pigeon /usr/local/bin/pigeon
USER pigeon
WORKDIR /data
VOLUME ["/data"]
ENV PIGEON_LISTEN=0.0.0.0:8080 \
    PIGEON_DATABASE=/data/pigeon.sqlite
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["pigeon", "healthcheck"]
ENTRYPOINT ["pigeon"]
CMD ["serve"]
