# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The browser tests drive Debian's Chromium; Playwright never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
PYTEST_ARGS ?=

.PHONY: install run test test-faults lint format bench clean netns-tools gpu-wheels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	apt-get update -qq
	apt-get install -y --no-install-recommends chromium

run: install
	$(VENV)/bin/trainq up

# The multi-host test runs workers in network namespaces: it needs `ip` (Debian's iproute2).
netns-tools:
	@if ! command -v ip >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq iproute2 || { apt-get update -qq && apt-get install -y -qq iproute2; }; \
	fi

test: install netns-tools $(CHROMIUM)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest --ignore=tests/faults $(PYTEST_ARGS)

# The fault suite kills workers, Redis and PostgreSQL on purpose: ~7 minutes on 2 cores.
test-faults: install
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The CPU benchmarks (several minutes); each appends its table to bench/RESULTS.md.
bench: install
	$(PY) -m bench.bench_sweep
	$(PY) -m bench.bench_fusion
	$(PY) -m bench.bench_latency
	$(PY) -m bench.bench_optimizers
	$(PY) -m bench.bench_submit
	$(PY) -m bench.bench_storage

# The wheels a bare GPU machine (its own CUDA torch, no network) needs for bench/gpu_check.sh:
# everything but torch, numpy and matplotlib, for CPython 3.12 and 3.11, into .whl/ (~46 MB).
gpu-wheels: install
	bench/gpu_wheels.sh

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
