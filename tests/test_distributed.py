"""Data-parallel runs (experiments/runner/distributed.py): the batch split and rank-0 rules (fast), and real two-process
gloo runs under torchrun (slow): DDP trains like one process with the same global batch, a killed rank fails the
job and the rerun resumes, and the math evaluation split over ranks gives one process's predictions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.runner.distributed import quiet_hydra_on_other_ranks, split_global_batch

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# No dropout and 320 training rows (620 minus the 300 held out), a multiple of the global batch 32: the two-process
# run then sees exactly the batches of the one-process run, so only float summation order separates them.
EXACT = [
    "experiment=glue/base/gpart-sst2",
    "model=tiny-roberta",
    "method.config.d=100",
    "task.train_subset=620",
    "trainer.epochs=2",
    "seed=1",
    "method.config.dropout=0",
    "+model.random_init.hidden_dropout_prob=0",
    "+model.random_init.attention_probs_dropout_prob=0",
]


# -- fast: the batch split and Hydra's files ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "batch, accum, processes, expected",
    [
        (32, 1, 1, (32, 1)),
        (32, 1, 2, (16, 1)),
        (32, 1, 8, (4, 1)),  # GLUE: per-device batch shrinks
        (4, 16, 8, (4, 2)),  # math: accumulation shrinks first
        (64, 4, 8, (32, 1)),  # vision: both
    ],
)
def test_the_global_batch_is_kept(batch, accum, processes, expected):
    per_device, accumulation = split_global_batch(batch, accum, processes)
    assert (per_device, accumulation) == expected
    assert per_device * accumulation * processes == batch * accum


def test_an_indivisible_global_batch_is_a_clear_error_unless_the_batch_is_per_device():
    with pytest.raises(ValueError, match=r"trainer.batch_size=32 x trainer.grad_accum=1 .* 3 processes"):
        split_global_batch(32, 1, 3)
    assert split_global_batch(32, 1, 3, keep_global=False) == (32, 1)
    with pytest.raises(ValueError, match="trainer.grad_accum=0"):
        split_global_batch(32, 0, 2)


def test_only_rank_zero_writes_hydra_files(monkeypatch):
    argv = ["run.py", "seed=1"]
    monkeypatch.setenv("RANK", "0")
    assert quiet_hydra_on_other_ranks(argv) == argv
    monkeypatch.setenv("RANK", "1")
    quiet = quiet_hydra_on_other_ranks(argv)
    assert "hydra.output_subdir=null" in quiet and "hydra/job_logging=stdout" in quiet
    assert any(arg.startswith("hydra.sweep.dir=") and "rank1" in arg for arg in quiet)


def test_ddp_settings_are_not_part_of_the_run_id(compose):
    from experiments.runner.records import config_hash

    base = compose(["model=tiny-roberta"])
    assert base.trainer.keep_global_batch is True
    assert config_hash(base) == config_hash(compose(["model=tiny-roberta", "trainer.ddp.timeout=60"]))
    assert config_hash(base) != config_hash(compose(["model=tiny-roberta", "trainer.keep_global_batch=false"]))


def test_resume_skips_a_checkpoint_killed_while_being_written(tmp_path):
    from safetensors.torch import save_file

    from experiments.runner.resume import usable_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"theta": torch.zeros(4)}, str(folder / "model.safetensors"))
        if complete:  # trainer_state.json is the last file Trainer writes
            (folder / "trainer_state.json").write_text("{}")
    assert usable_checkpoint(tmp_path, remove_broken=False) == tmp_path / "checkpoint-20"
    assert (tmp_path / "checkpoint-30").is_dir()  # only the run's owner removes a broken checkpoint


# -- slow: two gloo processes ------------------------------------------------------------------------------------------
def environment(tmp: Path) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "GPART_HYDRA_DIR": str(tmp / "hydra"),
    }


def runner_command(args: list[str], root: Path, processes: int) -> list[str]:
    launcher = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    return [*launcher, "-m", "experiments.run", *args, f"paths.root={root}"]


def run_runner(args, root: Path, processes: int, tmp: Path, glue_dir: Path) -> subprocess.CompletedProcess:
    env = {**environment(tmp), "GLUE_DIR": str(glue_dir)}
    done = subprocess.run(
        runner_command(args, root, processes), cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def only_record(root: Path) -> dict:
    records = list((root / "runs").glob("*/record.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def adapter_tensors(root: Path) -> dict:
    from safetensors.torch import load_file

    (folder,) = [p for p in (root / "runs").glob("*/adapter")]
    return load_file(str(next(folder.glob("*.safetensors"))))


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory, glue_dir):
    tmp = tmp_path_factory.mktemp("ddp")
    run_runner(EXACT, tmp / "two", 2, tmp, glue_dir)
    run_runner(EXACT, tmp / "one", 1, tmp / "single", glue_dir)
    return tmp


@pytest.mark.slow
def test_two_processes_share_the_data_and_keep_one_copy_of_theta(one_and_two):
    one, two = only_record(one_and_two / "one"), only_record(one_and_two / "two")
    assert two["status"] == "finished" and two["run_id"] == one["run_id"]  # world size is not in the run id
    launch = two["distributed"]
    assert (launch["world_size"], launch["parallel_mode"], launch["backend"]) == (2, "distributed", "gloo")
    assert (launch["per_device_batch_size"], launch["global_batch_size"]) == (16, 32)
    (alone,), ranks = one["distributed"]["per_rank"], launch["per_rank"]
    assert len(ranks) == 2
    for share in ranks:  # each rank: every optimizer step, on half of every batch
        assert share["micro_batches"] == alone["micro_batches"] == 20
        assert share["examples"] * 2 == alone["examples"] == 640
    assert ranks[0]["trainable_sha256"] == ranks[1]["trainable_sha256"] is not None


@pytest.mark.slow
def test_rank_zero_alone_writes_one_record_one_adapter_and_hydra_files(one_and_two):
    run_dir = next((one_and_two / "two" / "runs").iterdir())
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter", "record.json"]  # no staging folders left
    assert len(list((one_and_two / "hydra").rglob(".hydra"))) == 1


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(one_and_two):
    one, two = only_record(one_and_two / "one"), only_record(one_and_two / "two")
    for mine, theirs in zip(two["epochs"], one["epochs"]):
        assert mine["step"] == theirs["step"]
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["validation"]["accuracy"] == theirs["validation"]["accuracy"]
    assert two["test_metric"] == one["test_metric"]  # exactly: same predictions
    ddp, single = adapter_tensors(one_and_two / "two"), adapter_tensors(one_and_two / "one")
    assert ddp.keys() == single.keys()
    for name in ddp:  # float summation order only (measured max |Δθ| 1.3e-8 for |θ| up to 0.025)
        torch.testing.assert_close(ddp[name], single[name], atol=1e-6, rtol=1e-5)


def rank_process(launcher: subprocess.Popen, rank: int):
    import psutil

    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "experiments.run" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def start_and_wait_for_first_epoch(command: list[str], root: Path, env: dict) -> subprocess.Popen:
    launcher = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        records = list(root.glob("runs/*/record.json"))
        checkpoints = list(root.glob("runs/*/checkpoints/checkpoint-*/trainer_state.json"))  # written last
        if records and json.loads(records[0].read_text())["epochs"] and checkpoints:
            return launcher
        assert launcher.poll() is None, launcher.stderr.read()[-3000:]
        time.sleep(0.1)
    launcher.kill()
    raise AssertionError("no epoch recorded and checkpointed within 600 s")


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_cleanly_and_the_rerun_resumes(tmp_path, glue_dir):
    args = [*EXACT[:4], "trainer.epochs=8", *EXACT[5:]]
    root = tmp_path / "runs"
    env = {**environment(tmp_path), "GLUE_DIR": str(glue_dir)}
    launcher = start_and_wait_for_first_epoch(runner_command(args, root, 2), root, env)
    victim = rank_process(launcher, 1)
    assert victim is not None
    killed_at = time.time()
    victim.send_signal(signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=180)
    assert launcher.returncode != 0  # the job fails ...
    assert time.time() - killed_at < 120  # ... promptly, no rank left waiting
    assert "FAILED" in stderr or "Signals.SIGKILL" in stderr
    interrupted = only_record(root)
    assert interrupted["status"] == "failed" and 1 <= len(interrupted["epochs"]) < 8  # rank 0 saw its peer go

    rerun = run_runner(args, root, 2, tmp_path, glue_dir)
    finished = only_record(root)
    assert "resume" in rerun.stderr + rerun.stdout
    assert finished["status"] == "finished"
    assert [e["epoch"] for e in finished["epochs"]] == list(range(1, 9))
    kept = interrupted["epochs"][0]
    assert finished["epochs"][0] == kept  # epoch 1 kept from before the kill


@pytest.mark.slow
def test_a_slurm_sweep_rehearsed_with_submitit_launches_writes_records_and_resumes(tmp_path, glue_dir):
    """`hydra/launcher=slurm_local`: the submitit launcher with its local executor. Seed 1 was killed after its
    first epoch; the sweep over seeds 1 and 2 resumes it and runs seed 2; running the sweep again skips both."""
    args = [*EXACT[:4], "trainer.epochs=4", *EXACT[6:]]
    root = tmp_path / "results"
    env = {**environment(tmp_path), "GLUE_DIR": str(glue_dir)}
    single = start_and_wait_for_first_epoch(runner_command([*args, "seed=1"], root, 1), root, env)
    single.kill()
    single.wait()
    interrupted = only_record(root)
    assert interrupted["status"] == "running"

    def sweep() -> dict:
        command = [
            sys.executable,
            "-m",
            "experiments.run",
            "-m",
            "hydra/launcher=slurm_local",
            *args,
            "seed=1,2",
            f"paths.root={root}",
        ]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return {r["seed"]: r for r in map(lambda p: json.loads(p.read_text()), root.glob("runs/*/record.json"))}

    first = sweep()
    assert sorted(first) == [1, 2] and all(r["status"] == "finished" for r in first.values())
    assert first[1]["started_at"] == interrupted["started_at"]  # resumed, not restarted
    assert first[1]["epochs"][0] == interrupted["epochs"][0]
    assert len(list(tmp_path.glob("hydra/multirun/*/*/.submitit/*/*_result.pkl"))) == 2  # two submitit jobs ran
    again = sweep()
    assert {s: r["finished_at"] for s, r in again.items()} == {s: r["finished_at"] for s, r in first.items()}


@pytest.mark.slow
def test_math_evaluation_split_over_two_ranks_gives_one_process_predictions(tmp_path):
    script = str(REPO / "tests" / "distributed_scripts" / "math_eval.py")
    env = environment(tmp_path)
    launchers = (("two.json", [TORCHRUN, "--standalone", "--nproc_per_node=2"]), ("one.json", [sys.executable]))
    for out, launcher in launchers:
        done = subprocess.run(
            [*launcher, script, str(tmp_path / out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one["problems_per_rank"] == [11] and two["problems_per_rank"] == [6, 5]  # batches of 3: 2 + 2 each
    assert two["rows"] == one["rows"]  # every field of every problem, in order
    assert len({row["generation"] for row in one["rows"]}) > 1


@pytest.mark.parametrize(
    "argv,warned",
    [
        (["accelerate", "launch", "--num_processes", "2", "-m", "experiments.run"], True),
        (["accelerate", "launch", "--num_processes=4", "-m", "experiments.run"], True),
        (["accelerate", "launch", "--num_processes", "1", "-m", "experiments.run"], False),
        (["accelerate", "launch", "-m", "experiments.run"], False),
    ],
)
def test_accelerate_starting_one_process_of_several_is_said(monkeypatch, argv, warned):
    from experiments.runner.distributed import launcher_dropped_processes

    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    message = launcher_dropped_processes(argv)
    assert (message is not None) == warned
    if warned:
        assert "started ONE process" in message and "--multi_gpu" in message
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    assert launcher_dropped_processes(argv) is None  # not accelerate's launcher
