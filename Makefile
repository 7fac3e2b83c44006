# GPart reproduction suite. Every target installs what it needs first (the .venv stamp).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev,math
SHARED ?= $(abspath ../shared)
export WANDB_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install test test-all demo params tables bench reproduce-glue reproduce-vision reproduce-math clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned to the build this workplace serves from disk (a newer one would download GBs).
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the suite and its test dependencies

test: $(STAMP) ## Run the fast test suite (CPU, offline)
	$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: $(STAMP) ## Run every test, the slow ones included
	$(PY) -m pytest -q -n 2 --dist loadfile

params: $(STAMP) ## Print adapted-space sizes and trainable parameters for the paper's budgets (offline)
	$(PY) -m experiments.param_counts

tables: $(STAMP) ## Paper tables (ours vs published, Δ, verdict) + figures from run records [RUNS=results/runs OUT=results]
	$(PY) -m experiments.tables --runs "$(or $(RUNS),results/runs)" --out "$(or $(OUT),results)" $(TABLES_ARGS)

clean: ## Remove the environment and caches (keeps results)
	rm -rf $(VENV) .pytest_cache
