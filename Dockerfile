# sandlot's container image. Two ways to get the binary into it:
#
#   docker build -t sandlot .                  # compiles it (rust:1-bookworm), ~15 min on 2 cores
#   deploy/container/check                     # builds --target prebuilt: the binary built on a
#                                              # Debian 12 host (same glibc and libpython 3.11)
#
# BASE is the Debian 12 the image runs on: debian:bookworm-slim from a registry, or, where none
# is reachable, the image deploy/container/base-image makes with debootstrap
# (--build-arg BASE=localhost/sandlot-base:bookworm). The Python data packages are installed at
# build time (from PyPI), so a pod is ready without reaching a package index.
ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && install -s -m 755 target/release/sandlot /usr/local/bin/sandlot

FROM ${BASE} AS runtime
# python3.11 and its shared libpython: the interpreter the zygotes embed (the version the
# binary was linked against). pip only for the install below; no recommends (no compilers).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 libpython3.11 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* /usr/share/doc/* /usr/share/man/*
ENV SANDLOT_DATA_DIR=/var/lib/sandlot
EXPOSE 8194
# SIGTERM lets runs in flight finish (shutdown_grace_ms) before the process exits 0. As the
# container's PID 1, sandlot is its own init (src/pid_one.rs): it reaps orphans and forwards
# the signal to the server.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sandlot"]
CMD ["serve", "--listen", "0.0.0.0:8194"]

# The binary from the build context: target/container/sandlot, which deploy/container/check
# copies from target/release/sandlot without its debug line tables.
FROM runtime AS prebuilt
COPY target/container/sandlot /usr/local/bin/sandlot
# PIP_CERT: a CA bundle for pip where PyPI is reached through an intercepting proxy (the
# check script mounts the host's for the build; it is not kept in the image).
ARG PIP_CERT=
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && sandlot deps install && sandlot deps list && rm -rf /root/.cache

# The default target: the binary compiled in the build stage.
FROM runtime AS from-source
COPY --from=build /usr/local/bin/sandlot /usr/local/bin/sandlot
ARG PIP_CERT=
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && sandlot deps install && sandlot deps list && rm -rf /root/.cache
