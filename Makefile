# arrowflow developer commands. Two a new user needs, on Debian/Ubuntu with Python >= 3.10:
#   make demo   create .venv, install arrowflow[all] (builds the Cython kernels), run `arrowflow demo`
#   make test   install arrowflow[dev], ruff + mypy, start the servers the suite needs, run pytest, stop them
# Others: make lint | typecheck | bench | ext | services-up | services-down | clean | distclean
#         make fuzz (atheris, FUZZ_SECONDS per target) | make asan (kernels + fuzz corpus under ASan)
# Variables: BOOTSTRAP_PYTHON (python3) VENV (.venv) SERVICES (from tests/services/required.txt)
#            PYTEST_ARGS DEMO_ARGS BENCH_ARGS FUZZ_SECONDS FUZZ_TARGETS
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BOOTSTRAP_PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ABS_PY := $(abspath $(PY))
# Servers `make test` starts (names of tests/services/*.sh); later issues add lines to required.txt.
SERVICES ?= $(strip $(shell sed -e 's/\#.*//' tests/services/required.txt 2>/dev/null))
# ruff fails on a path that does not exist (an empty folder is not kept by git).
LINT_PATHS := $(wildcard src tests benchmarks)
EXT_SOURCES := $(wildcard ext/*.pyx ext/*.pxd ext/*.h)
ALL_STAMP := $(VENV)/.arrowflow-all
DEV_STAMP := $(VENV)/.arrowflow-dev
EXT_STAMP := $(VENV)/.arrowflow-ext
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: help demo test lint typecheck bench ext venv services-up services-down clean distclean
.PHONY: fuzz asan

help:
	@sed -n '1,7p' Makefile | sed 's/^# \{0,1\}//'

# ------------------------------------------------------------------------------------------- venv
# python3 -m venv fails on Debian/Ubuntu without python3-venv (no ensurepip): install it when root.
$(PY):
	@$(BOOTSTRAP_PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "arrowflow needs Python >= 3.10; found " + sys.version.split()[0] + " (set BOOTSTRAP_PYTHON=python3.X)")'
	@if ! $(BOOTSTRAP_PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    v=$$($(BOOTSTRAP_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	    echo "python3 -m venv failed: apt-get install python3-venv python$$v-venv"; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "python$$v-venv" >/dev/null \
	      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    $(BOOTSTRAP_PYTHON) -m venv $(VENV); \
	  else \
	    echo "ERROR: '$(BOOTSTRAP_PYTHON) -m venv' failed. Install venv support first: sudo apt-get install python3-venv" >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PY) -m pip install -q --upgrade pip setuptools wheel 'Cython>=3.0'

venv: $(PY)

# pip -e builds every kernel (in an isolated build env); redone only when the packaging files change.
$(ALL_STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -q -e '.[all]'
	@touch $@ $(EXT_STAMP)

$(DEV_STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@ $(ALL_STAMP) $(EXT_STAMP)

# Cheap in-place rebuild when a kernel source changed since the last build: cythonize and build_ext
# skip the kernels whose outputs are newer than their sources.
$(EXT_STAMP): $(EXT_SOURCES) setup.py | $(PY)
	$(PY) setup.py -q build_ext --inplace
	@touch $@

ext: $(PY)
	$(PY) setup.py -q build_ext --inplace
	@touch $(EXT_STAMP)

# ------------------------------------------------------------------------------------------- demo
demo: $(ALL_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(VENV)/bin/arrowflow demo $(DEMO_ARGS)

# ------------------------------------------------------------------------------------------- test
lint: $(DEV_STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

typecheck: $(DEV_STAMP)
	$(PY) -m mypy

# Servers are started through tests/services/up.sh, which records only the ones it started; the EXIT
# trap stops exactly those, whatever pytest did. pytest's exit 5 (no tests collected) is a failure.
test: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy
	@rec=$$(mktemp "$${TMPDIR:-/tmp}/arrowflow-services.XXXXXX"); \
	cleanup() { PYTHON=$(ABS_PY) sh tests/services/down.sh --record "$$rec"; }; \
	trap cleanup EXIT; trap 'exit 143' TERM; trap 'exit 130' INT; \
	if [ -n "$(SERVICES)" ]; then PYTHON=$(ABS_PY) sh tests/services/up.sh --record "$$rec" $(SERVICES); \
	else echo "make test: no servers required (tests/services/required.txt is empty)"; fi; \
	rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: ERROR: pytest collected no tests" >&2; rc=1; fi; \
	exit $$rc

services-up: $(PY)
	PYTHON=$(ABS_PY) sh tests/services/up.sh $(SERVICES)

services-down:
	PYTHON=$(ABS_PY) sh tests/services/down.sh

# -------------------------------------------------------------------------------------------- fuzz
# Coverage-guided fuzzing (atheris, from PyPI) of every target in tests/fuzz/targets.py for
# FUZZ_SECONDS each; crashes land in tests/fuzz/corpus/<target>/, which the smoke run replays.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(PY) -m pip install -q 'atheris>=2.3'
	$(PY) tests/fuzz/run.py --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The kernels rebuilt with AddressSanitizer into build/asan (the normal build is untouched), then the
# kernel tests and the fuzz corpus and smoke run under the ASan runtime (see tests/fuzz/asan.sh).
asan: $(DEV_STAMP)
	PYTHON=$(ABS_PY) sh tests/fuzz/asan.sh

# ------------------------------------------------------------------------------------------- bench
bench: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

# ------------------------------------------------------------------------------------------- clean
clean:
	rm -rf build dist src/*.egg-info *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f src/arrowflow/_ext/*.so src/arrowflow/_ext/*.pyd ext/*.c ext/*.html $(EXT_STAMP)
	find src tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
