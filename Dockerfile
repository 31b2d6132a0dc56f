# Ohm gateway images: one file, one target per service (docker build --target server|bluetooth|modbus_slave .).
# One file because all three ship the same `server` package (profiles, config) and must share one user id
# (bluetooth reads the API token the server writes, 0600, on the shared data volume), and one toolchain stage
# serves the three dependency builds.
#
# Multi-arch: nothing here names an architecture. On amd64 and arm64 pip finds wheels on PyPI for every
# pinned package. On armv7 (Raspberry Pi 2/3 32-bit) PyPI has wheels for cryptography (manylinux_2_31),
# websockets and zeroconf, but none for cffi, dbus-fast (bless) and pyyaml: pip builds those from the
# hash-pinned sdists with the toolchain stage's C compiler (checked for the pins in the lock files with
# `pip install --dry-run --only-binary=:all: --platform manylinux_2_31_armv7l ...`). If a future lock pins a
# cryptography without an armv7 wheel, add Debian's `rustc-web cargo-web` (Rust >= 1.74) to the toolchain.
# cryptoauthlib (ATECC608) has no wheels at all: it is built from its sdist with cmake, without USB HID.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- toolchain: what armv7 needs to build the sdists PyPI has no wheel for; never shipped --------------------
FROM ${PYTHON_IMAGE} AS toolchain
# Versions of Debian packages are not pinned: these stages are discarded and what ships is pinned by hash.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gcc g++ make cmake libc6-dev libffi-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CRYPTOAUTHLIB_NOUSB=1
WORKDIR /build
COPY requirements.lock requirements-atecc.lock requirements-ble.lock ./
# Each image gets its own virtualenv at /opt/venv, built here; the runtime stage copies only the finished
# venv (no compilers, no wheel files). --require-hashes: every file pip fetches must match the lock.
RUN python -m venv /opt/venv

FROM toolchain AS deps-server
RUN /opt/venv/bin/pip install --require-hashes -r requirements-atecc.lock

FROM toolchain AS deps-bluetooth
RUN /opt/venv/bin/pip install --require-hashes -r requirements-ble.lock

FROM toolchain AS deps-modbus_slave
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock

# ---- runtime base: Python, the ohm user, no compilers ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    OHM_DATA_DIR=/data
# uid/gid 1000 in every image: the services share /data and its 0600 files.
RUN groupadd --gid 1000 ohm \
    && useradd --uid 1000 --gid ohm --home-dir /data --no-create-home --shell /usr/sbin/nologin ohm \
    && mkdir -p /data \
    && chown ohm:ohm /data \
    && chmod 0700 /data
WORKDIR /app

# ---- server: the gateway (REST API 8080, dashboard WebSocket 8081) -----------------------------------------------
FROM runtime AS server
COPY --from=deps-server /opt/venv /opt/venv
COPY server/ /app/server/
# Compiled once here: the containers never write bytecode (PYTHONDONTWRITEBYTECODE) and start faster on a Pi.
RUN python -m compileall -q /app
# The ATECC608 is reached through /dev/i2c-1 (group i2c on the host): compose adds that group, not root.
USER 1000:1000
VOLUME ["/data"]
EXPOSE 8080 8081
# /health answers 200 while the engine runs; the port follows OHM_API_PORT (a port set only in a TOML file
# is not seen here: set the variable as well).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('OHM_API_PORT') or '8080'), timeout=4)"]
# Exec form: Python is PID 1 and gets SIGTERM itself (it installs handlers, so the stop is clean).
ENTRYPOINT ["python", "-m", "server"]
CMD []

# ---- bluetooth: BLE provisioning over BlueZ (host D-Bus) --------------------------------------------------------
FROM runtime AS bluetooth
COPY --from=deps-bluetooth /opt/venv /opt/venv
COPY server/ /app/server/
COPY bluetooth/ /app/bluetooth/
RUN python -m compileall -q /app
# Non-root: BlueZ's D-Bus policy lets the host's `bluetooth` group talk to org.bluez; compose runs this as a
# uid in that group (see docker-compose.yml). No HTTP port of its own: restart policy, not a health check.
USER 1000:1000
VOLUME ["/data"]
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "bluetooth"]
CMD []

# ---- modbus_slave: the inverter/meter simulator (demos and tests; loopback only) --------------------------------
FROM runtime AS modbus_slave
COPY --from=deps-modbus_slave /opt/venv /opt/venv
COPY server/ /app/server/
COPY modbus_slave/ /app/modbus_slave/
RUN python -m compileall -q /app
USER 1000:1000
EXPOSE 1502
# The simulator binds 127.0.0.1 only: a TCP connect on that address is its health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ.get('SIM_PORT') or 1502)), 4).close()"]
ENTRYPOINT ["python", "-m", "modbus_slave"]
CMD ["--profile", "sma", "--port", "1502"]
