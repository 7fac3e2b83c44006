"""The offline `make` commands README.md documents, typed as a newcomer would, on a fresh clone of this repository.

Each command runs in a `git clone` of HEAD in a temporary folder, with `shared` beside the clone pointing at this
checkout's `../shared` (as in CI), so only committed files are tested. The clone has no `.venv`: every command gets
the make variables `PY` (this interpreter) and `STAMP` (a file newer than the clone's pyproject.toml), so the targets
run on the environment already installed instead of creating one. All slow: together they train tiny models for
several minutes; `-m slow -k DRY` picks the ones that only print.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data_dir().parent
OFFLINE = {"WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TIMEOUT_S = 3600
# Few directions and Lanczos steps: the smoke's adapters are tiny and the check is that the command works.
ANALYSIS_ARGS = "--what distortion theta --directions 8 --lanczos-steps 8 --tasks sst2"


@dataclass(frozen=True)
class Command:
    typed: str  # what follows `make`; {smoke} is the folder the study's smoke writes
    expect: str  # a regular expression one line of its output must match
    needs_data: bool = False  # reads ../shared/data (GLUE, GSM8K, MATH500)
    after_smoke: bool = False  # reads the runs of the study's smoke
    leaves_clone_unchanged: bool = False  # read-only, or regenerates committed files byte for byte

    def __str__(self) -> str:
        return "make " + self.typed


SMOKE = Command(
    'reproduce-mini MINI_ARGS="--smoke --results {smoke}"',
    r"^reproduce-mini: done; tables and claims in .*/tables",
    needs_data=True,
)
COMMANDS = [
    Command("help", r"^\s+reproduce-mini\s+CPU-scale study"),
    Command("params", r"^\| roberta-base q,v \| 14,155,776 \| 23,040 \| 23,040 \| 294,912 \| 8 \|$"),
    Command(
        "demo",
        r"^MiniLM-L6 \(pretrained, CPU\), seed 0, \d+ s; test = the 872 SST-2 GLUE dev sentences",
        needs_data=True,
    ),
    Command('reproduce-mini MINI_ARGS="--status"', r"^\d+ of \d+ known runs finished", leaves_clone_unchanged=True),
    Command(
        'reproduce-mini MINI_ARGS="--dry-run"', r"^\d+ runs known now; about \d+ in all", leaves_clone_unchanged=True
    ),
    SMOKE,
    Command('reproduce-mini-base BASE_ARGS="--status"', r"runs finished of those known now"),
    Command("reproduce-math MODEL=smoke", r"^read \d+ finished records from results/runs", needs_data=True),
    Command("tables", r"^replaced results/mini/tables/ \(\d+ files\)", leaves_clone_unchanged=True),
    Command(
        f'analysis RUNS={{smoke}}/runs OUT={{smoke}}/analysis ANALYSIS_ARGS="{ANALYSIS_ARGS}"',
        r"^wrote .*/distortion-minilm-l6-sst2\.png$",
        needs_data=True,
        after_smoke=True,
    ),
    Command("bench", r"^wrote .*roberta-base-glue-cpu\.json$"),
    Command("gpu-check", r"^gpu_check: skipped, nothing checked|^wrote .*gpu_check\.json$"),
    Command("reproduce-glue DRY=1", r"-m experiments\.run -m experiment=glue/base/gpart-sst2 seed=0,1,2,3,4\s*$"),
    Command(
        "reproduce-vision DRY=1",
        r"-m experiments\.run -m experiment=vision/base/gpart task=vision/oxford_pets seed=0,1,2,3,4\s*$",
    ),
    Command(
        "reproduce-math DRY=1",
        r"-m experiments\.run -m experiment=math/qwen2\.5-0\.5b/gpart task=math/gsm8k seed=0\s*$",
    ),
    Command(
        "reproduce-ablations DRY=1",
        r"-m experiments\.run -m experiment=\[glue/base/gpart-sst2,ablation/fastfood\] seed=0,1,2 "
        r"paths\.runs_dir=results/ablation-runs\s*$",
    ),
]


def fresh_clone(folder: Path) -> Path:
    """A clone of HEAD at `folder`/repo with `shared` beside it, and a venv stamp newer than its pyproject.toml."""
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout")
    clone = folder / "repo"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "--detach", head.stdout.strip()], check=True)
    (folder / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    (folder / "installed-stamp").touch()
    return clone


def make(clone: Path, typed: str) -> subprocess.CompletedProcess:
    """`make <typed>` in the clone, on this interpreter, offline; stdout and stderr together."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GLUE_DIR")}
    env.update(OFFLINE)
    stamp = clone.parent / "installed-stamp"
    return subprocess.run(
        ["make", "--no-print-directory", *shlex.split(typed), f"PY={sys.executable}", f"STAMP={stamp}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The study's smoke, once per module: its own outcome is one case, its runs feed `make analysis`."""
    clone = fresh_clone(tmp_path_factory.mktemp("smoke"))
    folder = clone.parent / "mini-smoke"
    return clone, folder, make(clone, SMOKE.typed.format(smoke=folder))


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_documented_command_runs_on_a_fresh_clone(command, request, tmp_path):
    if command.needs_data and not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED / 'data'} not found: the command reads ../shared/data")
    if command is SMOKE or command.after_smoke:
        clone, folder, result = request.getfixturevalue("smoke_run")
        assert result.returncode == 0, f"{SMOKE} (needed first) failed:\n{result.stdout[-4000:]}"
        if command.after_smoke:
            result = make(clone, command.typed.format(smoke=folder))
    else:
        clone = fresh_clone(tmp_path)
        result = make(clone, command.typed)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout[-4000:]}"
    assert re.search(command.expect, result.stdout, re.MULTILINE), (
        f"{command}: no line matches {command.expect!r}:\n{result.stdout[-4000:]}"
    )
    if command.leaves_clone_unchanged:
        changed = git_changes(clone)
        assert not changed, f"{command} changed committed files of the clone:\n{changed}"


@pytest.mark.slow
def test_every_committed_record_of_the_study_is_a_finished_run_in_a_fresh_clone(tmp_path):
    """Run ids do not depend on the folder the repository sits in: the driver of a fresh clone counts every committed
    record of the CPU study as a finished run of its plan."""
    clone = fresh_clone(tmp_path)
    committed = len(list((clone / "results" / "mini").glob("**/runs/*/record.json")))
    result = make(clone, 'reproduce-mini MINI_ARGS="--status"')
    finished = re.search(r"^(\d+) of \d+ known runs finished", result.stdout, re.MULTILINE)
    assert committed and finished, result.stdout[-4000:]
    assert int(finished.group(1)) == committed, result.stdout[-4000:]


def git_changes(clone: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout
