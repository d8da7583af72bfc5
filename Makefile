# `make test` is the one test command: venv, dependencies, service binaries, lint, types, tests.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
DEMO_ARGS ?=
# First interpreter of at least 3.11 on PATH (override: make PYTHON=/path/to/python3).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)

.PHONY: test lint check-services demo bench chaos clean-venv

test: $(VENV)/.installed-test check-services lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	if [[ -f scripts/unasync.py ]]; then $(PY) scripts/unasync.py --check; fi
	$(PY) -m scripts.mixin --check  # dashboards, rules and Kibana objects are current
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports  # the layers: contracts in .importlinter

check-services:
	bash scripts/bootstrap.sh

# the redis extra too, so `make demo DEMO_ARGS="--redis redis://..."` works
demo: $(VENV)/.installed-demo,redis
	$(VENV)/bin/interlock demo $(DEMO_ARGS)

# the full game day: the standard chaos experiments on throwaway local services (docs/chaos.md)
CHAOS_OUT ?= chaos-report
chaos: $(VENV)/.installed-test check-services
	$(VENV)/bin/interlock chaos gameday --out $(CHAOS_OUT) --rules prometheus/rules

bench: $(VENV)/.installed-bench check-services
	$(PY) benchmarks/run.py $(BENCH_ARGS)

$(PY):
	@if [[ -z "$(PYTHON)" ]]; then echo "make: Python >= 3.11 not found (set PYTHON=...)" >&2; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml is newer than the stamp.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$*]'
	touch $@

clean-venv:
	rm -rf $(VENV)
