# LuxDB server image. Build stage: Debian bookworm packages + CMake; runtime stage: only the
# shared libraries luxdb-server needs. Distance kernels are built for -march=x86-64-v2
# (LUXDB_SIMD=portable: SSE4.2, any x86-64 CPU since ~2009), not for the build machine.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake g++ make pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev \
      protobuf-compiler grpc-proto librocksdb-dev libabsl-dev libhnswlib-dev libssl-dev libspdlog-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DLUXDB_SIMD=portable -DBUILD_TESTING=OFF \
 && cmake --build /build -j2 --target luxdb-server \
 && strip /build/server/luxdb-server

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 librocksdb7.8 libabsl20220623 libspdlog1.10 libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin luxdb \
 && mkdir -p /data && chown luxdb:luxdb /data && chmod 0700 /data
COPY --from=build /build/server/luxdb-server /usr/local/bin/luxdb-server
USER luxdb
VOLUME /data
EXPOSE 8484
# The data directory comes from LUXDB_DATA_DIR so that `docker run IMAGE --loglevel=info`
# passes flags straight through.
ENV LUXDB_DATA_DIR=/data
ENTRYPOINT ["luxdb-server", "--host", "0.0.0.0", "--port", "8484"]
