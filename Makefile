# Carebridge developer and quick-start targets.
#   make run    install into .venv and run the daemon on its embedded defaults (./var, 127.0.0.1:8080)
#   make test   install into .venv with the test extra, run the static checks and the whole test suite
#   make peers  install the Debian packages of the real peers the tests talk to (wrk, Dovecot, ...)
#   make check  the static checks only: ruff (lint and format), mypy --strict, the import-layer contract
#   make clean  remove the virtualenv and build leftovers (never ./var: it holds your data and key)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every built-in plugin is its own distribution under plugins/<name>/.
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
EDITABLES := -e '.[test]' $(foreach p,$(PLUGINS),-e $(p))
STAMP := $(VENV)/.carebridge-installed

.PHONY: install run test check peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(EDITABLES)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/carebridge run

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

peers:
	.ci/peers

test: check peers
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info plugins/*/*.egg-info plugins/*/build
