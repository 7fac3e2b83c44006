"""The executor that every sweep of `python -m experiments.run` shares (the CPU study, experiments/studies/mini/, and
the `make reproduce-*` families, experiments/runner/sweep.py): a `Runner` that starts one run per job with its output in
a log file, `execute` to run jobs a few at a time under one `Progress` bar, and `run_until_done` to ask a plan for the
jobs made ready by those that finished, until none is left. A run is finished when its record says so (`status_of`);
a driver that is killed takes its child runs with it, and each resumes from its last checkpoint on the next call.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from experiments import REPO
from experiments.runner import records


def status_of(path: Path) -> str:
    """A record's status ("finished", "running", "failed"), "pending" when there is none."""
    return (records.read(path) or {}).get("status", "pending")


def _die_with_parent() -> None:
    """Child processes get SIGTERM when the driver dies, so a killed sweep never leaves a run training alone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Runner:
    """Starts `python -m experiments.run <arguments(job)>` for one job at a time per worker, its output appended to
    `log_file(job)`; `stop()` ends them all. `threads` pins the torch threads of each run (None: the environment's);
    `env_defaults` are set where the environment leaves them unset; `prefix` goes before the command (`srun ...`)."""

    def __init__(
        self,
        arguments: Callable[[Any], list[str]],
        log_file: Callable[[Any], Path],
        *,
        threads: int | None = None,
        env_defaults: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        label: str = "sweep",
    ):
        self.arguments, self.log_file, self.prefix, self.label = arguments, log_file, tuple(prefix), label
        self.env = {**(env_defaults or {}), **os.environ}
        if threads is not None:
            self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.children: set[subprocess.Popen] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def command(self, job) -> list[str]:
        return [*self.prefix, sys.executable, "-m", "experiments.run", *self.arguments(job)]

    def __call__(self, job) -> tuple[Any, int | None, Path]:
        log_file = self.log_file(job)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as log:
            log.write(f"\n$ {' '.join([*self.prefix, 'python', '-m', 'experiments.run', *self.arguments(job)])}\n")
            log.flush()
            with self.lock:
                if self.stopping.is_set():
                    return job, None, log_file
                child = subprocess.Popen(
                    self.command(job),
                    cwd=REPO,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
                self.children.add(child)
            code = child.wait()
            with self.lock:
                self.children.discard(child)
        return job, code, log_file

    def stop(self, *_):
        """Start no further run and end the ones in flight (each resumes from its last epoch on the next call)."""
        with self.lock:
            self.stopping.set()
            for child in self.children:
                child.terminate()
        raise SystemExit(f"{self.label}: interrupted; rerun the same command to resume (finished runs are kept)")


def _one(job) -> int:
    return 1


class Progress:
    """One bar over every job of the sweep. The ETA weighs the remaining jobs by `cost` (the CPU study: its cost
    model's seconds); `count` says how many runs a job holds (a launch: its seeds)."""

    def __init__(
        self,
        jobs: list,
        finished: list,
        desc: str,
        cost: Callable[[Any], float] = _one,
        count: Callable[[Any], int] = _one,
        unit: str = "runs",
    ):
        self.cost, self.count, self.desc = cost, count, desc
        self.total, self.done = sum(map(count, jobs)), sum(map(count, finished))
        total, initial = (round(sum(map(cost, group))) for group in (jobs, finished))
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            file=sys.stdout,
            smoothing=0,
            desc=self._desc(),
            bar_format="{desc} |{bar}| {percentage:3.0f}% [{elapsed} elapsed, ETA {remaining}]",
        )

    def _desc(self) -> str:
        return f"{self.desc} {self.done}/{self.total} runs"

    def finished(self, job) -> None:
        self.done += self.count(job)
        self.total = max(self.total, self.done)  # a plan that grew as it ran (an edge extension): never n/m with n > m
        self.bar.total = max(self.bar.total, self.bar.n + round(self.cost(job)))
        self.bar.set_description_str(self._desc(), refresh=False)
        self.bar.update(round(self.cost(job)))

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


def execute(todo: list, runner: Runner, jobs: int, progress: Progress, announce: bool = False) -> list[str]:
    """Run `todo`, `jobs` at a time; each job that ends advances the bar. Returns the failures. `announce`: a line
    with the command and its log as each job starts (worth it when a job takes hours)."""
    signal.signal(signal.SIGTERM, runner.stop)  # SIGHUP stays as it is: under nohup the sweep outlives the shell

    def start(job):
        if announce and not runner.stopping.is_set():
            progress.write(f"start: {' '.join(runner.command(job))}\n  log: {shown(runner.log_file(job))}")
        return runner(job)

    failures = []
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in as_completed([pool.submit(start, job) for job in todo]):
            job, code, log_file = future.result()
            if code is None:  # never started: the driver is stopping
                continue
            if code != 0:
                failures.append(f"{job.name}: exit {code}, see {log_file}")
                progress.write(f"FAILED {job.name} (exit {code}); log: {log_file}")
            progress.finished(job)
    except (KeyboardInterrupt, SystemExit):
        pool.shutdown(wait=False, cancel_futures=True)
        runner.stop()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return failures


@dataclass
class Plan:
    """What `run_until_done` asks for each round: the jobs whose settings are known, and what still waits (lines)."""

    ready: list
    waiting: list[str] = field(default_factory=list)


def run_until_done(
    plan: Callable[[], Any],
    finished: Callable[[Any], bool],
    runner: Runner,
    jobs: int,
    start: Callable[[Any, list], Progress],
    announce: bool = False,
) -> list[str]:
    """Run the unfinished jobs `plan()` says are ready (an object with `.ready` and `.waiting`, as `Plan`), asking it
    again after each batch (finished runs can make new ones ready), until none is left. `start(plan, todo)` makes
    the progress bar. Returns the failures, the jobs that ended well without finishing, or what still waits."""
    progress, previous = None, None
    while True:
        now = plan()
        todo = [job for job in now.ready if not finished(job)]
        progress = progress or start(now, todo)
        if not todo:
            break
        if todo == previous:  # the last batch ran all of these without error, yet none finished: rerunning is no cure
            progress.close()
            return [f"{job.name}: ended without error but is not finished" for job in todo]
        failures = execute(todo, runner, jobs, progress, announce)
        if failures:
            progress.close()
            return failures
        previous = todo
    progress.close()
    return [f"still waiting: {line}" for line in now.waiting]


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, must be at least 1")
    return value


def add_worker_options(
    parser: argparse.ArgumentParser, jobs: int = 2, threads: int | None = 1, unit: str = "runs"
) -> None:
    """--jobs and --threads, shared by every driver built on the executor."""
    parser.add_argument(
        "--jobs",
        type=_count,
        default=jobs,
        help=f"{unit} at a time (default {jobs}" + (": one per core)" if jobs > 1 else ")"),
    )
    parser.add_argument(
        "--threads",
        type=_count,
        default=threads,
        help="torch threads per run "
        + (
            f"(default {threads}; the records are reproducible bit for bit at a fixed value)"
            if threads
            else "(default: as the environment sets them)"
        ),
    )


def shown(path: Path) -> str:
    """A path as printed: relative to the repository when inside it, without resolving links (a virtual
    environment's python stays itself)."""
    path = Path(os.path.abspath(path))
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
