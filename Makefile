# Two commands set up a fresh machine: `make demo` and `make test` (see README.md).
# Everything is installed into .venv from the repo's own files (pyproject.toml + uv.lock).
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

DEMO_DIR ?= demo
CUSTOMERS ?= 20000

.PHONY: install demo test lint typecheck bench bench-peers clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --quiet
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/journeymap demo --dir $(DEMO_DIR) --customers $(CUSTOMERS)

test: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

typecheck: install
	$(VENV)/bin/mypy

# Benchmarks are not tests: they print tables for BENCHMARKS.md (see each script's --help).
bench: install bench-peers
	$(PY) bench/bench_import.py
	$(PY) bench/bench_journey.py
	$(PY) bench/bench_render.py
	$(PY) bench/bench_collector.py
	$(PY) bench/bench_decide.py
	$(PY) bench/bench_analytics.py
	$(PY) bench/bench_campaigns.py

# The peer tools bench_analytics.py compares against, in their own venv (never in .venv/uv.lock).
PEERS_VENV := bench/.peers-venv
$(PEERS_VENV)/.installed: bench/peers/requirements.txt | $(UV)
	$(UV) venv --quiet --clear $(PEERS_VENV)
	RETENTIONEERING_NO_TRACK=1 $(UV) pip install --quiet --compile-bytecode \
		--python $(PEERS_VENV)/bin/python -r bench/peers/requirements.txt
	touch $@

bench-peers: $(PEERS_VENV)/.installed

clean:
	rm -rf $(VENV) $(TOOLS) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
