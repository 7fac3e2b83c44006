"""Every method and GLUE experiment config composes, resolves and says where its numbers come from."""

from __future__ import annotations

import csv
import re

import pytest
from conftest import CONFIGS, REPO
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

METHOD_FILES = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))
EXPERIMENTS = sorted(
    p.relative_to(CONFIGS / "experiment").with_suffix("").as_posix()
    for p in (CONFIGS / "experiment" / "glue").rglob("*.yaml")
)
PAPER_GLUE = REPO.parent / "shared" / "reference" / "paper_glue.csv"


def paper_methods() -> set[str]:
    if not PAPER_GLUE.exists():
        pytest.skip(f"{PAPER_GLUE} not found")
    with open(PAPER_GLUE) as handle:
        return {row["method"] for row in csv.DictReader(handle)}


def test_the_paper_methods_and_both_glue_tables_exist():
    assert {"gpart", "lora", "unilora", "full", "vera", "vblora", "fourierft", "bitfit", "head_only"} <= set(
        METHOD_FILES
    )
    for size in ("base", "large"):
        for method in ("gpart", "lora", "unilora", "vera", "vblora", "fourierft", "full", "bitfit", "head_only"):
            for task in ("sst2", "mrpc", "cola", "qnli", "rte", "stsb"):
                assert f"glue/{size}/{method}-{task}" in EXPERIMENTS


def test_the_baselines_glue_files_exist_where_a_paper_row_or_setting_does():
    """Tied-LoRA base+large and LoRA-XS large (paper_glue.csv rows), CondLoRA base (its own repo's GLUE scripts)."""
    expected = {
        f"glue/{size}/{method}-{task}"
        for method, sizes in (("tied_lora", ("base", "large")), ("lora_xs", ("large",)), ("condlora", ("base",)))
        for size in sizes
        for task in ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")
    }
    found = {e for e in EXPERIMENTS if e.rsplit("/", 1)[1].rsplit("-", 1)[0] in ("tied_lora", "lora_xs", "condlora")}
    assert found == expected and len(found) == 24
    check_experiments(sorted(found))


@pytest.mark.parametrize("method", METHOD_FILES)
def test_method_config_composes_and_builds(compose, method):
    from experiments.methods import Method, build_method

    cfg = compose([f"method={method}", "model=tiny-roberta"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["method"]["key"] in paper_methods() | {"BitFit", "LP", "CondLoRA"}  # CondLoRA: no paper row
    assert isinstance(build_method(cfg.method, cfg.model), Method)
    # The runner's two learning rates always resolve to numbers.
    assert isinstance(resolved["trainer"]["lr"], float) and isinstance(resolved["trainer"]["head_lr"], float)


def check_experiments(experiments: list[str]) -> None:
    """Compose and resolve each experiment; its task, model and method must be the ones its path names."""
    from experiments import compose

    method_keys = {m: compose([f"method={m}"]).method.key for m in METHOD_FILES}
    for experiment in experiments:
        size, name = experiment.split("/")[1:]
        method, task = name.rsplit("-", 1)
        cfg = OmegaConf.to_container(compose([f"experiment={experiment}", "seed=3"]), resolve=True)
        assert cfg["task"]["key"] == task and cfg["model"]["key"] == f"roberta-{size}", experiment
        assert cfg["method"]["key"] == method_keys[method], experiment
        assert cfg["trainer"]["epochs"] > 0 and cfg["seed"] == 3


def test_a_glue_experiment_per_method_and_per_task_composes():
    subset = sorted(
        {f"glue/base/{m}-sst2" for m in METHOD_FILES if f"glue/base/{m}-sst2" in EXPERIMENTS}
        | {
            f"glue/{size}/gpart-{t}"
            for size in ("base", "large")
            for t in ("sst2", "mrpc", "cola", "qnli", "rte", "stsb")
        }
    )
    check_experiments(subset)


@pytest.mark.slow
def test_every_glue_experiment_composes():
    check_experiments(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_value_cites_setup_md(experiment):
    """Deltas only, each value with its source comment (house rule: never invent a number)."""
    text = (CONFIGS / "experiment" / f"{experiment}.yaml").read_text()
    values = [
        line for line in text.splitlines() if re.match(r"^\s+\w+:\s*\S", line) and not line.strip().startswith("-")
    ]
    assert values, f"{experiment} changes nothing"
    for line in values:
        assert "setup.md" in line, f"{experiment}: value without a source comment: {line.strip()!r}"


def test_gpart_paper_values_reach_the_resolved_config(compose):
    cfg = compose(["experiment=glue/base/gpart-rte"])
    assert cfg.trainer.epochs == 160 and cfg.trainer.head_lr == pytest.approx(1e-2)  # setup.md §2
    assert cfg.trainer.lr == pytest.approx(5e-3) and cfg.method.config.d == 23040
    assert list(cfg.method.config.target_modules) == ["query", "value"]


def test_unknown_task_or_method_is_a_clear_composition_error(compose):
    for override, name in (("method=no_such_method", "no_such_method"), ("task=glue/no_such_task", "no_such_task")):
        with pytest.raises((MissingConfigException, ConfigCompositionException)) as error:
            compose([override])
        assert name in str(error.value)


def test_unknown_method_kind_names_the_allowed_ones(compose):
    from experiments.methods import build_method

    cfg = compose(["method=lora", "model=tiny-roberta", "method.kind=magic"])
    with pytest.raises(ValueError, match=r"method.kind='magic'.*allowed"):
        build_method(cfg.method, cfg.model)


def test_slurm_launcher_config_composes():
    import experiments

    cfg = experiments.compose(["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_config_hash_ignores_seed_and_paths_but_not_hyperparameters(compose):
    from experiments.runner.records import config_hash, make_run_id

    base = compose(["experiment=glue/base/gpart-sst2", "seed=0"])
    other_seed = compose(["experiment=glue/base/gpart-sst2", "seed=4", "paths.root=/elsewhere"])
    other_lr = compose(["experiment=glue/base/gpart-sst2", "seed=0", "trainer.head_lr=1e-3"])
    assert config_hash(base) == config_hash(other_seed) != config_hash(other_lr)
    assert make_run_id(base, config_hash(base)).startswith("glue-roberta-base-gpart-sst2-s0-")
    assert make_run_id(base, config_hash(base)) != make_run_id(other_seed, config_hash(other_seed))
