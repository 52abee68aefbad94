# arrowflow developer commands. Two a new user needs, on Debian/Ubuntu with Python >= 3.10:
#   make demo   create .venv, install arrowflow[all] (builds the Cython kernels), run `arrowflow demo`
#   make test   install arrowflow[dev], ruff + mypy, start the servers the suite needs, run pytest, stop them
# Others: make lint | typecheck | bench | bench-peers | docs | dist | ext | services-up | services-down | clean | distclean
#         make fuzz (atheris, FUZZ_SECONDS per target) | make asan (kernels + fuzz corpus under ASan)
#         make soak (Kafka -> FileSink exactly-once, SIGKILLs, RSS curve, SOAK_MINUTES (30), SOAK_ARGS)
# Variables: BOOTSTRAP_PYTHON (python3) VENV (.venv) SERVICES (from tests/services/required.txt)
#            PYTEST_ARGS DEMO_ARGS BENCH_ARGS DOCS_ADDR (127.0.0.1:8000) FUZZ_SECONDS FUZZ_TARGETS
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
LINT_PATHS := $(wildcard src tests benchmarks docs/hooks)
EXT_SOURCES := $(wildcard ext/*.pyx ext/*.pxd ext/*.h)
ALL_STAMP := $(VENV)/.arrowflow-all
DEV_STAMP := $(VENV)/.arrowflow-dev
EXT_STAMP := $(VENV)/.arrowflow-ext
# Kernels include ext/*.pxi files too (_owned.pxi): editing one must rebuild them.
EXT_SOURCES += $(wildcard ext/*.pxi)
# The layer rule (.importlinter); no cache folder in the tree, the check takes about a second.
LINT_IMPORTS := $(VENV)/bin/lint-imports --no-logo --no-cache
# A digest of every file the sdist and wheel are built from (names and contents, so that a deleted or
# renamed file counts too; build outputs left in the tree by build_ext --inplace do not).
DIST_DIGEST := { ls pyproject.toml setup.py MANIFEST.in README.md; find ext src/arrowflow -type f \
  -not -path '*/__pycache__/*' -not -name '*.so' -not -name '*.pyd' -not -name '*.c' -not -name '*.html'; } \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-32
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
DOCS_ADDR ?= 127.0.0.1:8000

.PHONY: help demo test lint typecheck bench docs ext venv services-up services-down clean distclean
.PHONY: fuzz asan

help:
	@sed -n '1,8p' Makefile | sed 's/^# \{0,1\}//'

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
	$(LINT_IMPORTS)

typecheck: $(DEV_STAMP)
	$(PY) -m mypy

# Servers are started through tests/services/up.sh, which records only the ones it started; the EXIT
# trap stops exactly those, whatever pytest did. pytest's exit 5 (no tests collected) is a failure.
test: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy
	$(LINT_IMPORTS)
	@$(MAKE) --no-print-directory dist
	@rec=$$(mktemp "$${TMPDIR:-/tmp}/arrowflow-services.XXXXXX"); \
	cleanup() { PYTHON=$(ABS_PY) sh tests/services/down.sh --record "$$rec"; }; \
	trap cleanup EXIT; trap 'exit 143' TERM; trap 'exit 130' INT; \
	if [ -n "$(SERVICES)" ]; then PYTHON=$(ABS_PY) sh tests/services/up.sh --record "$$rec" $(SERVICES); \
	else echo "make test: no servers required (tests/services/required.txt is empty)"; fi; \
	rc=0; ARROWFLOW_DIST_DIR=$(abspath dist) $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: ERROR: pytest collected no tests" >&2; rc=1; fi; \
	exit $$rc

services-up: $(PY)
	PYTHON=$(ABS_PY) sh tests/services/up.sh $(SERVICES)

services-down:
	PYTHON=$(ABS_PY) sh tests/services/down.sh

# ------------------------------------------------------------------------------------------- dist
# sdist, then the wheel built from the unpacked sdist in an isolated environment (python -m build):
# a file the sdist lacks fails here, not on a user's machine. Rebuilt only when a source changed
# (dist/.sources holds the digest it was built from); dist/ then holds only this version's pair.
# tests/integration/packaging checks both (make test hands them over in ARROWFLOW_DIST_DIR).
.PHONY: dist
dist: $(DEV_STAMP)
	@digest=$$($(DIST_DIGEST)); \
	if [ -f dist/.sources ] && [ "$$(cat dist/.sources)" = "$$digest" ]; then \
	  echo "dist/ is up to date with the sources"; \
	else \
	  rm -rf dist; \
	  $(PY) -m build --outdir dist .; \
	  echo "$$digest" > dist/.sources; \
	fi; \
	ls -l dist/

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

# -------------------------------------------------------------------------------------------- soak
# Kafka -> operators -> FileSink exactly-once for SOAK_MINUTES, the pipeline SIGKILLed every 20-45 s and
# restarted from its checkpoint (tests/integration/kafka/soak.py; SOAK_ARGS: its options). Prints a
# table, writes benchmarks/results/soak-<UTC time>.json, fails on a lost or duplicated row, a kill that
# did not land in flight, or an RSS that keeps growing. Starts the broker (stopping it only if it did).
SOAK_MINUTES ?= 30
SOAK_ARGS ?=
.PHONY: soak
soak: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	@rec=$$(mktemp "$${TMPDIR:-/tmp}/arrowflow-services.XXXXXX"); \
	cleanup() { PYTHON=$(ABS_PY) sh tests/services/down.sh --record "$$rec"; }; \
	trap cleanup EXIT; trap 'exit 143' TERM; trap 'exit 130' INT; \
	PYTHON=$(ABS_PY) sh tests/services/up.sh --record "$$rec" kafka; \
	$(PY) tests/integration/kafka/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# ------------------------------------------------------------------------------------------- bench
bench: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

# -------------------------------------------------------------------------------------------- docs
# Serves the documentation site with live reload. `make test` builds it with --strict
# (tests/unit/test_docs_site.py) and runs every example of its pages.
docs: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr $(DOCS_ADDR)

# Head to head with Flink, Quix Streams, Bytewax and a plain client loop (benchmarks/peers/README.md):
# starts the Kafka broker, PostgreSQL and OpenSearch it needs (stopping only the ones it started; workload
# (4) runs only against a real OpenSearch 2.x node), creates the peers' virtual environments under
# .peers/ and builds the Flink jobs (Maven, ~/.m2) on first use.
# PEERS_ARGS: options of `python -m benchmarks.peers` (e.g. --quick, --systems arrowflow,plain).
PEERS_ARGS ?=
.PHONY: bench-peers
bench-peers: $(DEV_STAMP)
	@$(MAKE) --no-print-directory $(EXT_STAMP)
	@rec=$$(mktemp "$${TMPDIR:-/tmp}/arrowflow-services.XXXXXX"); \
	cleanup() { PYTHON=$(ABS_PY) sh tests/services/down.sh --record "$$rec"; }; \
	trap cleanup EXIT; trap 'exit 143' TERM; trap 'exit 130' INT; \
	PYTHON=$(ABS_PY) sh tests/services/up.sh --record "$$rec" kafka postgres opensearch; \
	$(PY) -m benchmarks.peers $(PEERS_ARGS)

# ------------------------------------------------------------------------------------------- clean
clean:
	rm -rf build dist site src/*.egg-info *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f src/arrowflow/_ext/*.so src/arrowflow/_ext/*.pyd ext/*.c ext/*.html $(EXT_STAMP)
	find src tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)
