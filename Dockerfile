# LuxDB server image: luxdb-server and the luxdb CLI on Debian bookworm.
#   build:   podman build -t luxdb .   (or docker build; buildah bud --format docker keeps the
#            HEALTHCHECK, which the OCI image format has no field for)
#   run:     podman run -p 8484:8484 -v luxdb-data:/data luxdb [--loglevel=info ...]
#   check:   deploy/check-image builds this file and runs a smoke test against the image.

# Build stage: Debian's build dependencies (scripts/install-deps.sh, without the test ones) and
# CMake. Distance kernels are built with LUXDB_SIMD=portable, i.e. -march=x86-64-v2 (SSE4.2,
# POPCNT: any x86-64 CPU since ~2009), not -march=native of the build machine, so the image
# runs on whatever node it lands on.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake g++ make pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev \
      protobuf-compiler grpc-proto librocksdb-dev libabsl-dev libhnswlib-dev libssl-dev \
      libspdlog-dev prometheus-cpp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DLUXDB_SIMD=portable -DBUILD_TESTING=OFF \
 && cmake --build /build -j2 --target luxdb-server luxdb \
 && strip /build/server/luxdb-server /build/clients/cpp/luxdb

# Runtime stage: the shared libraries the two binaries link (their dependencies come along),
# nothing else. deploy/check-image checks with ldd that none is missing.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 librocksdb7.8 libabsl20220623 libspdlog1.10 libssl3 \
      libprometheus-cpp-pull1.0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 luxdb \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin luxdb \
 && mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=build /build/server/luxdb-server /build/clients/cpp/luxdb /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# Indexes and, unless LUXDB_SECRET or --secret gives one, the generated secret (/data/secret).
VOLUME /data
EXPOSE 8484
# Prometheus metrics (http://HOST:9484/metrics, README "Metrics and logs"): on every interface of
# the container, so a published port reaches it. Unauthenticated: publish it only to Prometheus.
EXPOSE 9484
ENV LUXDB_DATA_DIR=/data LUXDB_METRICS_HOST=0.0.0.0
# Exec form: luxdb-server is PID 1 and handles SIGTERM itself (in-flight calls get
# --grace-seconds, snapshots are written, exit 0), so no init process is needed. Arguments
# are appended: `IMAGE --loglevel=info` adds a flag, `IMAGE --port 9000` overrides the port
# (the last occurrence of a flag wins). The data directory comes from LUXDB_DATA_DIR, not a
# positional PATH, so that flags alone can follow. --host and --port are flags rather than
# LUXDB_HOST/LUXDB_PORT because a flag stops the server reading its variable, and Kubernetes
# sets LUXDB_PORT=tcp://IP:PORT in pods of a namespace holding a Service named "luxdb".
ENTRYPOINT ["luxdb-server", "--host", "0.0.0.0", "--port", "8484"]
CMD []
# The health service is open: no secret needed. Exit 0 only when SERVING (all indexes loaded).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["luxdb", "health", "--port", "8484"]
