# Two commands on a fresh machine with Python 3.11 and make: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
ifeq ($(OS),Windows_NT)
BIN := $(VENV)/Scripts
else
BIN := $(VENV)/bin
endif
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
HOST ?= 127.0.0.1
PORT ?= 5000
# granian (measured fastest; see docs/design.md) or waitress; THREADS empty: the server's measured default.
SERVER ?= granian
THREADS ?=
WORKERS ?= 1
MODEL ?= instance/iris_model.joblib
PYTEST_ARGS ?=

.PHONY: run test e2e install dev train bench clean lint soak fuzz docs

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installed once per change of pyproject.toml; quiet and quick when nothing changed.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -qq -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -qq -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

$(MODEL): | $(VENV)/.installed
	$(BIN)/iris-service train --out $(MODEL)

train: $(VENV)/.installed
	$(BIN)/iris-service train --out $(MODEL) --force

run: $(VENV)/.installed $(MODEL)
	IRIS_SERVICE_MODEL_PATH=$(MODEL) $(BIN)/iris-service serve --server $(SERVER) --host $(HOST) --port $(PORT) --workers $(WORKERS) $(if $(THREADS),--threads $(THREADS))

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# The page at / in headless Chromium (needs Debian's chromium and chromium-driver;
# .ci/run installs them). IRIS_UPDATE_SCREENSHOT=1 refreshes docs/screenshot.png.
e2e: $(VENV)/.installed-dev
	$(PY) -m pytest tests/test_ui_e2e.py $(PYTEST_ARGS)

# Issue 8: the long runs of the soak test (60 s) and of the fuzzers (500 examples per operation).
SOAK_SECONDS ?= 60
FUZZ_EXAMPLES ?= 500

soak: $(VENV)/.installed-dev
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -p no:cacheprovider tests/test_soak.py $(PYTEST_ARGS)

fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -p no:cacheprovider tests/test_fuzz.py tests/test_schemathesis.py $(PYTEST_ARGS)

# Issues 7, 18-20: the benchmark (bench/README.md); QUICK=1 for the short run (one round).
# The bench extra (FastAPI + uvicorn for the reference app, granian, the gRPC extra) and wrk are
# installed when missing; without wrk (no apt-get, no root) the bench uses its own load generator.
# MLServer 1.7 is installed by the bench itself, once, into bench/results/venvs/mlserver.
QUICK ?=
$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-dev
	$(PIP) install -qq -e ".[dev,bench]"
	@touch $@

bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); $$SUDO apt-get update -qq && \
		  $$SUDO apt-get install -y -qq wrk; } >/dev/null 2>&1; } || \
		echo "wrk not installed (apt-get install -y wrk): using bench/loadgen.py"
	$(PY) -m bench $(if $(filter-out 0,$(QUICK)),--quick)

# Issue 21: the documentation site (mkdocs.yml) into site/; --strict fails on a broken link or anchor.
$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PIP) install -qq -e ".[docs]"
	@touch $@

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check iris_service training tests bench

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache
