# Driftkeeper — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: help venv demo test lint format test-tools bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) ## create .venv with driftkeeper and its dev tools

demo: venv ## the main job: the whole drift loop on this machine, no cluster needed
	$(BIN)/driftkeeper demo

test: venv test-tools ## lint, then every test (installs Prometheus for the scrape test)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv ## ruff
	$(BIN)/ruff check .

format: venv ## ruff --fix and format imports
	$(BIN)/ruff check --fix .

test-tools: ## install what tests need beyond Python (Prometheus, via apt, if missing)
	@scripts/install-test-tools

bench: venv ## benchmarks against the lab; writes bench/results.json (see bench/BENCHMARKS.md)
	@scripts/install-test-tools --bench
	$(BIN)/python bench/run.py

clean: ## remove the venv, caches and local model directories
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info service/*.egg-info models
