"""The CPU study's zero-shot reference on STS-B (docs/mini.md, secondary): the Pearson correlation × 100 between the
gold similarity and the cosine of the two sentences' mean-pooled MiniLM-L6 embeddings, no training, on the GLUE dev
split every run is tested on.

    GLUE_DIR=../shared/data/glue python -m experiments.studies.mini.zero_shot [--results results/mini]

Writes `<results>/zero-shot.json` (`{"stsb": {"pearson": ..., "pairs": ..., "model": "minilm-l6", ...}}`), which
`make tables` (experiments/studies/mini/report.py) shows as a reference row and a level line; `python -m experiments.studies.mini.driver`
writes it once, after its runs. Deterministic: eval mode, one thread, fixed order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from experiments.runner.atomic import write_text_atomic
from experiments.studies.mini import driver

FILE = "zero-shot.json"
MAX_LENGTH = 128  # configs/experiment/mini/_protocol.yaml
BATCH = 64


def embed(sentences: list[str], model, tokenizer) -> np.ndarray:
    """Mean of the last hidden states over the attention mask (the pooling MiniLM-L6 was trained with)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(sentences), BATCH):
            batch = tokenizer(
                sentences[start : start + BATCH],
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).double().numpy())
    return np.concatenate(out)


def zero_shot_stsb(glue_dir: str | None = None, limit: int | None = None) -> dict:
    """Pearson × 100 of the embeddings' cosine against the gold score on STS-B's GLUE dev split (`limit`: its first
    rows, for tests)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    import experiments  # noqa: F401  (the minilm_path resolver)
    from experiments import _minilm_path
    from experiments.tasks.glue import GlueTask

    torch.set_num_threads(1)
    test = GlueTask(key="stsb", metric="pearson", data_dir=glue_dir).load_raw()["test"]
    first, second, gold = test["text_a"], test["text_b"], np.asarray(test["label"], dtype=float)
    if limit:
        first, second, gold = first[:limit], second[:limit], gold[:limit]
    path = _minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    a, b = embed(list(first), model, tokenizer), embed(list(second), model, tokenizer)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    pearson = float(np.corrcoef(cosine, gold)[0, 1])
    return {
        "pearson": round(100 * pearson, 4),
        "pairs": int(len(gold)),
        "model": "minilm-l6",
        "pooling": "mean",
        "split": "GLUE dev",
        "max_length": MAX_LENGTH,
    }


def read(results: Path) -> dict:
    path = Path(results) / FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write(results: Path, glue_dir: str | None = None) -> Path:
    path = Path(results) / FILE
    write_text_atomic(path, json.dumps({"stsb": zero_shot_stsb(glue_dir)}, indent=1, sort_keys=True) + "\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=driver.DEFAULT_RESULTS)
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR") or None)
    args = parser.parse_args(argv)
    path = write(args.results, args.glue_dir)
    print(f"wrote {driver.shown(path)}: {read(args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
