# Ohm gateway. `make demo` runs it on embedded defaults; `make test` installs everything and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# System packages the integration tests use (real components on loopback), and the headers
# dbus-python/PyGObject build from (python-dbusmock runs BlueZ and NetworkManager mocks on a private bus).
APT_PACKAGES := mosquitto dbus libdbus-1-dev libglib2.0-dev pkg-config libgirepository1.0-dev libcairo2-dev gcc python3-dev chromium

.PHONY: all venv sysdeps test unit lint demo bench clean lock balena-push soak

all: test

# sysdeps first: pip builds dbus-python and PyGObject against the Debian headers.
$(STAMP): pyproject.toml | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

# Installs missing Debian packages when we may (root or passwordless sudo); tests that need them say so clearly.
sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
			echo "sysdeps: cannot install$$missing (not root); related tests will be skipped"; exit 0; fi; \
		echo "sysdeps: installing$$missing"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) sysdeps lint
	$(PY) -m pytest --cov --cov-report=term:skip-covered
	$(PY) -m pytest server_rest_test -q -p no:cacheprovider  # REST suite against a live gateway it starts

unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

# Long reliability runs (not CI): the outage patterns in (near) real time for SOAK_SECONDS, then the whole
# reliability suite at SOAK_SCALE with SOAK_KILLS unclean shutdowns. Figures: $(SOAK_REPORT) (JSON lines).
SOAK_SECONDS ?= 600
SOAK_SCALE ?= 0.1
SOAK_KILLS ?= 200
SOAK_REPORT ?= soak-report.jsonl
soak: $(STAMP) sysdeps
	RELIABILITY_SOAK_S=$(SOAK_SECONDS) RELIABILITY_SCALE=$(SOAK_SCALE) RELIABILITY_BACKOFF_MAX=10 \
		RELIABILITY_KILLS=$(SOAK_KILLS) RELIABILITY_REPORT=$(SOAK_REPORT) \
		$(PY) -m pytest tests/reliability -v -s -p no:cacheprovider

demo: $(STAMP)
	$(PY) -m server --demo

# Every benchmark through one harness (bench/run.py): bench/results/<name>.json in one shape, a summary table,
# and the chart bench/results/summary.png (matplotlib, from the `bench` extra only). BENCH_ARGS=--quick: shorter.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: $(STAMP) sysdeps $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

# The hash-pinned dependency sets the images install (Dockerfile); the extras are constrained to the core pins.
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(PIP_COMPILE) --upgrade -o requirements.lock pyproject.toml
	$(PIP_COMPILE) --upgrade --extra atecc -c requirements.lock -o requirements-atecc.lock pyproject.toml
	$(PIP_COMPILE) --upgrade -c requirements.lock -o requirements-ble.lock pyproject.toml deploy/bluetooth.in

# balena reads docker-compose.yml; the fleet's composition is docker-compose-balena.yml (balena's compose subset).
# Push a clean copy of the committed tree with that file in place (needs the balena CLI, logged in).
balena-push:
	@test -n "$(FLEET)" || { echo "usage: make balena-push FLEET=<org/fleet>"; exit 2; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && git archive HEAD | tar -x -C "$$tmp" \
		&& cp "$$tmp/docker-compose-balena.yml" "$$tmp/docker-compose.yml" && balena push "$(FLEET)" --source "$$tmp"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage .demo-data
