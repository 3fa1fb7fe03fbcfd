# Targets a user can guess: demo, ui, test, bench, lint. Each creates the venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARTITION ?= 2026-11-01
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo ui test bench lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python -m llm_assets demo --partition $(PARTITION)

ui: install
	$(BIN)/python -m llm_assets ui

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

# mypy checks the namespace as installed (llm_assets.resources, llm_assets.sensors): see the script.
lint: install
	$(BIN)/ruff check .
	MYPY=$(BIN)/mypy tools/typecheck.sh

clean:
	rm -rf .dagster_home data
