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
THREADS ?= 8
MODEL ?= instance/iris_model.joblib
PYTEST_ARGS ?=

.PHONY: run test install dev train bench clean lint

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installed once per change of pyproject.toml; quiet and quick when nothing changed.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

$(MODEL): | $(VENV)/.installed
	$(BIN)/iris-service train --out $(MODEL)

train: $(VENV)/.installed
	$(BIN)/iris-service train --out $(MODEL)

run: $(VENV)/.installed $(MODEL)
	IRIS_SERVICE_MODEL_PATH=$(MODEL) $(BIN)/iris-service serve --host $(HOST) --port $(PORT) --threads $(THREADS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check iris_service training tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
