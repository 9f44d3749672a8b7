# Everything starts from a clean clone with Python 3.11+ and make: the first target that needs
# the virtualenv creates it and installs the project (all from PyPI, nothing else downloaded).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv up down status demo test test-fast bench bench-full lint lock clean

# The runtime dependencies come from requirements.lock, as in the worker image, so the tests
# run the versions production runs; the dev and embedded extras come on top.
$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

venv: $(STAMP)

up: venv
	$(PY) -m mpr.infra.stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m mpr.infra.stack down; else echo "nothing to stop"; fi

status: venv
	$(PY) -m mpr.infra.stack status

demo: up
	$(PY) -m starters.demo

test: venv
	$(PY) -m pytest

# The fast lane: every test but the e2e ones (real Temporal dev server, worker processes, the
# `temporal` CLI against them, fault injection; tests/conftest.py marks them). The time-skipping
# test server and the embedded PostgreSQL stay in. Measured: 1.5 minutes on 2 idle cores, under
# 2 minutes with the cores shared (`make test` with its e2e tests takes well over 10).
test-fast: venv
	$(PY) -m pytest -m "not e2e"

# The benchmark suite (bench/README.md): its own stack on free ports. `bench` runs every
# benchmark at sizes that finish in under 10 minutes on 2 cores (bench/results/latest.json);
# `bench-full` at the large sizes, 300 releases at once and 5,000 parked (bench/results/full.json).
bench: venv
	$(PY) -m bench

bench-full: venv
	$(PY) -m bench --full

# Pin the runtime dependencies (versions and hashes) after changing them in pyproject.toml.
lock: venv
	$(PY) -m pip install --quiet uv==0.13.9
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform linux --custom-compile-command "make lock" -o requirements.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean: down
	rm -rf .data
