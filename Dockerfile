# sandlot's container image: `docker build -t sandlot .` (then see deploy/kubernetes/).
# Two stages: the build (Rust, node for the bundled JavaScript modules, libpython to link), then
# a slim Debian with only what a run needs and the Python data packages installed at build
# time, so a pod is ready without reaching a package index.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && install -m 755 target/release/sandlot /usr/local/bin/sandlot

FROM debian:bookworm-slim
# python3.11 and its shared libpython: the interpreter the zygotes embed (the version the
# binary was linked against). pip only for the install below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/sandlot /usr/local/bin/sandlot
ENV SANDLOT_DATA_DIR=/var/lib/sandlot
RUN sandlot deps install && sandlot deps list
EXPOSE 8194
# SIGTERM lets runs in flight finish (shutdown_grace_ms) before the process exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sandlot"]
CMD ["serve", "--listen", "0.0.0.0:8194"]
