# Driftkeeper — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: help venv demo test lint format test-tools bench clean crd monitoring chart \
	kind-up kind-down deploy e2e

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP) ## create .venv with driftkeeper and its dev tools

demo: venv ## the main job: the whole drift loop on this machine, no cluster needed
	$(BIN)/driftkeeper demo

test: venv test-tools ## lint, then every test (installs Prometheus, helm, kubectl first)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv ## ruff
	$(BIN)/ruff check .

format: venv ## ruff --fix and format imports
	$(BIN)/ruff check --fix .

test-tools: ## install what tests need beyond Python (Prometheus, helm, kubectl, Kubernetes, a node's parts)
	@scripts/install-test-tools
	@scripts/install-control-plane
	@scripts/install-node

bench: venv ## benchmarks against the lab; writes bench/results.json (see bench/BENCHMARKS.md)
	@scripts/install-test-tools --bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/operator_scale.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/false_alarms.py
	$(BIN)/python bench/wide_tables.py
	$(BIN)/python bench/multiclass_alarms.py

crd: venv ## regenerate the DriftPolicy CRD and copy it into the chart
	scripts/generate-crd
	cp k8s/crds/driftpolicies.driftkeeper.io.yaml charts/driftkeeper/crds/

monitoring: venv ## regenerate the Grafana dashboard and the alert rules (chart and compose)
	$(BIN)/python scripts/generate_monitoring.py

chart: test-tools ## lint the chart and render it with every ci/ values file
	$(HELM) lint --strict charts/driftkeeper
	@for f in charts/driftkeeper/ci/*-values.yaml; do \
	  $(HELM) lint --strict charts/driftkeeper -f $$f >/dev/null && echo "$$f: ok"; done

KIND_CLUSTER := driftkeeper
# The kube-prometheus-stack chart, as in scripts/e2e-kind.sh.
KPS_VERSION ?= 82.6.0
HELM ?= $(shell command -v helm || echo $(HOME)/.cache/driftkeeper/tools/bin/helm)

kind-up: ## a kind cluster with kube-prometheus-stack (needs docker, kind, helm)
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --config kind-config.yaml
	helm repo add prometheus-community https://prometheus-community.github.io/helm-charts
	helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
	  --version $(KPS_VERSION) --namespace monitoring --create-namespace --wait \
	  --set grafana.service.type=NodePort --set grafana.service.nodePort=30300

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

deploy: ## build the image and install the chart into the kind cluster (skaffold run)
	skaffold run

e2e: ## the end-to-end test on kind (needs docker, kind, helm, kubectl)
	scripts/e2e-kind.sh

clean: ## remove the venv, caches and local model directories
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info service/*.egg-info models
