r"""What a `make reproduce-*` run will download, and where it goes: printed by `make reproduce-* DRY=1` before the
commands.

    python -m experiments.tools.download_plan --run "experiment=glue/base/gpart-rte" \
        --run "experiment=vision/base/gpart task=vision/dtd"

Each `--run` holds one run's Hydra overrides. The script composes each run's config exactly as the runner would and
lists the hub models and datasets (with the rough sizes of `experiments/tools/hub_catalog.py`), torchvision archives and
local files it names, whether each is already cached, the cache folders, and whether hub mode is on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from experiments import compose
from experiments.runner.hub import cache_locations, offline_variables
from experiments.tools.hub_catalog import ARCHIVES, DATASETS, MODELS


@dataclass(frozen=True)
class Item:
    kind: str  # "model" | "dataset" | "archive" | "local"
    name: str
    detail: str = ""


def _hub_or_local(name: Optional[str], kind: str, detail: str = "") -> Optional[Item]:
    if not name:
        return None
    if Path(str(name)).expanduser().exists():
        return Item("local", str(name), f"local {kind}, nothing to download")
    return Item(kind, str(name), detail)


def _local_file(path: Optional[str]) -> Optional[Path]:
    from experiments.tasks.math.data import resolve_local

    return resolve_local(path)


def items_of(cfg) -> list[Item]:
    """The downloads one composed run config needs."""
    task, model = cfg.task, cfg.model
    found = [
        None if model.get("random_init") or model.get("package") else _hub_or_local(model.get("name_or_path"), "model")
    ]
    if model.get("tokenizer") and model.get("tokenizer") != model.get("name_or_path"):
        found.append(_hub_or_local(model.tokenizer, "model", "tokenizer / processor only"))
    source = task.get("source", "hub")
    if source == "torchvision":
        from experiments.tasks.vision.data import resolve_data_dir

        root = resolve_data_dir(task.get("data_dir"), str(task.dataset_class).lower())
        found.append(Item("archive", str(task.dataset_class), str(root)))
    elif source == "hub" and task.get("path"):
        files = task.get("data_files")
        splits = sorted(files) if files else [s for s in task.splits.values() if s]
        found.append(_hub_or_local(task.path, "dataset", f"splits {', '.join(splits)}"))
    elif task.get("hub_id"):  # GLUE: the hub only when no local TSV folder is configured
        local = task.get("data_dir")
        found.append(
            Item("local", str(local), "GLUE TSVs, nothing to download")
            if local
            else Item("dataset", task.hub_id, f"config {task.key}")
        )
    for prefix in ("train", "eval"):  # math: a local JSONL wins over the hub
        hub_id = task.get(f"{prefix}_hub_id")
        if not hub_id:
            continue
        local = _local_file(task.get(f"{prefix}_local_path"))
        configs = task.get(f"{prefix}_hub_configs")
        found.append(
            Item("local", str(local), f"{prefix} data, nothing to download")
            if local
            else Item("dataset", hub_id, f"configs {', '.join(configs)}" if configs else "")
        )
    return [item for item in found if item is not None]


def _cached(item: Item) -> bool:
    from huggingface_hub import try_to_load_from_cache

    probe = "config.json" if item.kind == "model" else "README.md"
    repo_type = "model" if item.kind == "model" else "dataset"
    try:
        return isinstance(try_to_load_from_cache(item.name, probe, repo_type=repo_type), str)
    except Exception:  # an id the cache cannot parse is simply not cached
        return False


def _size(item: Item) -> str:
    entry = MODELS.get(item.name) or DATASETS.get(item.name) or ARCHIVES.get(item.name)
    if entry is None:
        return "size unknown (not in experiments/tools/hub_catalog.py)"
    return entry.size or "size not looked up"


def _join(details: set[str]) -> str:
    """'configs a, b' for GLUE's one-config-per-task details, the others as they are."""
    configs = sorted(d[len("config ") :] for d in details if d.startswith("config "))
    rest = sorted(d for d in details if d and not d.startswith("config "))
    return "; ".join(([f"configs {', '.join(configs)}"] if configs else []) + rest)


def render(items: Iterable[Item]) -> str:
    merged: dict[tuple[str, str], set[str]] = {}
    for item in items:
        merged.setdefault((item.kind, item.name), set()).add(item.detail)
    flags = offline_variables()
    lines = [
        "Download plan",
        "-------------",
        (
            f"hub: OFFLINE ({', '.join(f'{f}=1' for f in flags)}); hub downloads below will fail unless cached. "
            f"Run with {' '.join(f'{f}=0' for f in flags)} to download."
            if flags
            else "hub: online (HF_HUB_OFFLINE unset); missing files are downloaded on first use"
        ),
    ]
    lines += [f"cache: {what}: {where}" for what, where in cache_locations().items()]
    titles = {
        "model": "models (hub)",
        "dataset": "datasets (hub)",
        "archive": "archives (torchvision download)",
        "local": "local files",
    }
    for kind, title in titles.items():
        entries = sorted((name, details) for (k, name), details in merged.items() if k == kind)
        if not entries:
            continue
        lines.append(f"{title}:")
        for name, details in entries:
            detail = _join(details)
            if kind == "local":
                lines.append(f"  {name}  ({detail})")
                continue
            extra = []
            if kind == "archive":
                archive = ARCHIVES.get(name)
                extra.append(f"from {archive.url}" if archive else "")
                extra.append(f"into {detail}")
            else:
                extra.append(detail)
                if kind == "model" and MODELS.get(name) and MODELS[name].gated:
                    extra.append("gated: accept the licence on the hub and set HF_TOKEN")
                extra.append("cached" if _cached(Item(kind, name)) else "not cached")
            lines.append(f"  {name}  {_size(Item(kind, name))}  [{'; '.join(e for e in extra if e)}]")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="OVERRIDES",
        help="one run's Hydra overrides, space-separated (repeat for each run)",
    )
    args = parser.parse_args(argv)
    items: list[Item] = []
    for overrides in dict.fromkeys(args.run):  # unique, in order
        items += items_of(compose(shlex.split(overrides)))
    print(render(items), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
