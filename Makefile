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
.PHONY: help install test test-all demo params tables bench reproduce-glue reproduce-mini reproduce-vision reproduce-math clean

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

bench: $(STAMP) ## Step time + peak memory: GPart (torch, Triton) vs LoRA, Uni-LoRA, floor -> bench/out/ [BENCH_ARGS="--shape llama2-7b --device cuda"]
	$(PY) -m bench.step_bench $(or $(BENCH_ARGS),--shape roberta-base --device cpu)

# The demo uses the shared GLUE TSVs when they sit beside the repository; an explicit GLUE_DIR wins.
demo: export GLUE_DIR ?= $(firstword $(wildcard $(SHARED)/data/glue))
demo: $(STAMP) ## 5-min preview of reproduce-mini: MiniLM-L6 on SST-2 (GLUE_DIR or hub; else a synthetic task), 5 methods, seed 0 [DEMO_ARGS="--methods gpart,lora"]
	$(PY) -m experiments.demo $(DEMO_ARGS)

GLUE_TASKS := sst2 mrpc cola qnli rte stsb
GLUE_METHODS := gpart lora unilora vera vblora fourierft full bitfit head_only
GLUE_SEEDS := 0,1,2,3,4
reproduce-glue: $(STAMP) ## RoBERTa base+large GLUE tables, setup.md §2; GPU, hub or GLUE_DIR (see docs/runner.md) [MODEL=base TASKS="sst2 rte" METHODS="gpart lora" SEEDS=0,1 DRY=1]
	@set -e; for size in $(or $(MODEL),base large); do \
	  for method in $(or $(METHODS),$(GLUE_METHODS)); do for task in $(or $(TASKS),$(GLUE_TASKS)); do \
	    cmd="$(PY) -m experiments.run -m experiment=glue/$$size/$$method-$$task seed=$(or $(SEEDS),$(GLUE_SEEDS)) $(GLUE_ARGS)"; \
	    echo "$$cmd"; [ -n "$(DRY)" ] || $$cmd; \
	  done; done; done
	@[ -n "$(DRY)" ] || $(MAKE) --no-print-directory tables

# The paper's claims at CPU scale (docs/mini.md): MiniLM-L6 on the five GLUE tasks with a train split in $(SHARED).
reproduce-mini: export GLUE_DIR ?= $(firstword $(wildcard $(SHARED)/data/glue))
reproduce-mini: $(STAMP) ## CPU-scale replication (MiniLM-L6, 5 GLUE tasks, 3 seeds) + claims C1-C5 -> results/mini; resumable [MINI_ARGS="--dry-run"]
	$(PY) -m experiments.mini $(MINI_ARGS)

VISION_DATASETS := oxford_pets stanford_cars cifar10 dtd eurosat fgvc_aircraft resisc45 cifar100
VISION_SEEDS := 0,1,2,3,4
reproduce-vision: $(STAMP) ## ViT-B + ViT-L vision tables, setup.md §3 [SEEDS=0,1 DATASETS="cifar10 dtd" SIZES=base METHODS="gpart lp" DRY=1]
	@set -e; for size in $(or $(SIZES),base large); do \
	  methods="$(METHODS)"; [ -n "$$methods" ] || methods=$$(ls configs/experiment/vision/$$size | grep -v '^_' | sed 's/\.yaml$$//'); \
	  for method in $$methods; do for dataset in $(or $(DATASETS),$(VISION_DATASETS)); do \
	    cmd="$(PY) -m experiments.run -m experiment=vision/$$size/$$method task=vision/$$dataset seed=$(or $(SEEDS),$(VISION_SEEDS)) $(VISION_ARGS)"; \
	    echo "$$cmd"; [ -n "$(DRY)" ] || $$cmd; \
	  done; done; done
	@[ -n "$(DRY)" ] || $(MAKE) --no-print-directory tables

MATH_MODELS := qwen2.5-0.5b gemma-7b mistral-7b-v0.1 qwen2.5-7b llama-3.1-8b
MATH_TASKS := gsm8k math
reproduce-math: $(STAMP) ## Math table: MetaMathQA -> GSM8K/MATH exact match, setup.md §4; needs the hub (HF_HUB_OFFLINE=0) and a GPU [MODEL=qwen2.5-0.5b METHODS="gpart lora" TASKS=gsm8k SEEDS=0 RUN=echo; MODEL=smoke runs offline]
	@set -e; for model in $(or $(MODEL),$(MATH_MODELS)); do \
	  methods="$(METHODS)"; [ -n "$$methods" ] || methods=$$(ls configs/experiment/math/$$model | grep -v '^_' | sed 's/\.yaml$$//'); \
	  for method in $$methods; do for task in $(or $(TASKS),$(MATH_TASKS)); do \
	    cmd="$(or $(RUN),$(PY)) -m experiments.run -m experiment=math/$$model/$$method task=math/$$task seed=$(or $(SEEDS),0) $(MATH_ARGS)"; \
	    echo "$$cmd"; $$cmd; \
	  done; done; done
	@[ -n "$(RUN)" ] || $(MAKE) --no-print-directory tables

clean: ## Remove the environment and caches (keeps results)
	rm -rf $(VENV) .pytest_cache
