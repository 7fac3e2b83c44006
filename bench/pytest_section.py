"""The `gpu_tests` section of bench/gpu_check.py: `pytest -m gpu tests/gpu` in a child process, each test recorded as
a case of the check the moment it ends (the child logs its outcomes through the bench/pytest_outcomes.py plugin), and
the tests it never finished recorded as overrun, skipped or error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.check_report import Check

REPO = Path(__file__).resolve().parents[1]
GPU_TESTS = REPO / "tests" / "gpu"
PYTEST_STATUS = {"passed": "pass", "failed": "FAIL", "error": "error", "skipped": "skipped"}


def gpu_tests(check: Check):
    run_gpu_tests(check, [GPU_TESTS])


def run_gpu_tests(check: Check, paths: list[Path], poll_s: float = 0.2):
    """`pytest -m gpu` on ``paths`` in a child process, each test recorded as a case the moment it ends.

    When the section's budget runs out the child is killed: the test it was running is recorded as ``overrun``, those
    it had not started as ``skipped``. A child that dies on its own (a CUDA fault ends the process) leaves the test
    it was running as ``error``, with pytest's last output.
    """
    with tempfile.TemporaryDirectory(prefix="gpu-tests-") as folder:
        log, output = Path(folder) / "outcomes.jsonl", Path(folder) / "pytest.txt"
        log.touch()
        outcomes = OutcomeReader(check, log)
        with output.open("w") as sink:
            child = subprocess.Popen(
                pytest_command(log, paths),
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, TRITON_INTERPRET="0"),
                start_new_session=True,
            )
            try:
                while child.poll() is None and check.clock() < check.section_deadline:
                    outcomes.read()
                    time.sleep(poll_s)
            finally:
                stopped = child.poll() is None
                if stopped:
                    os.killpg(child.pid, signal.SIGKILL)  # the tests' own child processes too
                    child.wait()
        outcomes.read()
        outcomes.close(stopped, child.returncode, output.read_text(errors="replace")[-2000:])


def pytest_command(log: Path, paths: list[Path]) -> list[str]:
    # --noconftest: tests/conftest.py imports experiments/, hence omegaconf, which a bare GPU image lacks; the GPU
    # tests use none of its fixtures. The child's TRITON_INTERPRET=0 keeps its Triton compiled.
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "--tb=short",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-c",
        str(REPO / "pyproject.toml"),
        "--rootdir",
        str(REPO),
        "-p",
        "bench.pytest_outcomes",
        f"--outcomes-log={log}",
        *map(str, paths),
    ]


class OutcomeReader:
    """The child's outcomes log (bench/pytest_outcomes.py) read as it grows, each finished test recorded in ``check``."""

    def __init__(self, check: Check, log: Path):
        self.check, self.log, self.offset = check, log, 0
        self.collected: list[str] = []
        self.running: dict[str, float] = {}  # nodeid -> when it started
        self.finished: set[str] = set()
        self.collect_errors = 0

    def read(self):
        with self.log.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            self._event(json.loads(line))

    def _event(self, event: dict):
        if "collected" in event:
            self.collected = event["collected"]
        elif "collect_error" in event:
            self.collect_errors += 1
            self.check.record(
                event["collect_error"], "error", "could not collect the tests", traceback=event["longrepr"]
            )
        elif "started" in event:
            self.running[event["started"]] = self.check.clock()
        elif "finished" in event:
            self._finished(event)

    def _finished(self, event: dict):
        nodeid = event["finished"]
        self.running.pop(nodeid, None)
        self.finished.add(nodeid)
        status = PYTEST_STATUS[event["outcome"]]
        detail = event["properties"].get("detail", "") if status == "pass" else event["message"]
        extra = {"traceback": event["longrepr"]} if event["longrepr"] else {}
        self.check.record(case_name(nodeid), status, detail, seconds=event["seconds"], **extra)

    def close(self, stopped: bool, returncode: int, output_tail: str):
        """Record what the child left unfinished, killed at the deadline (``stopped``) or ended on its own."""
        budget = f"{self.check.whose_budget(self.check.clock())} time budget"
        for nodeid, started in self.running.items():
            if stopped:
                detail = f"stopped after {self.check.clock() - started:.1f} s: {budget} ran out"
                self.check.record(case_name(nodeid), "overrun", detail)
            else:
                self.check.record(
                    case_name(nodeid),
                    "error",
                    f"pytest ended with exit code {returncode} while it ran",
                    traceback=output_tail,
                )
        not_started = [n for n in self.collected if n not in self.finished and n not in self.running]
        why = f"{budget} was spent" if stopped else f"pytest ended with exit code {returncode} first"
        for nodeid in not_started:
            self.check.record(case_name(nodeid), "skipped", f"not started: {why}")
        if not stopped and returncode not in (0, 1) and not (self.collect_errors or self.running or not_started):
            last = next((line for line in reversed(output_tail.splitlines()) if line.strip()), "")
            self.check.record("pytest -m gpu", "error", f"exit code {returncode}: {last}", traceback=output_tail)


def case_name(nodeid: str) -> str:
    """`tests/gpu/test_x.py::test_y[cuda-a]` -> `y[a]`: the report's case name (every test it runs is on CUDA)."""
    name = nodeid.rpartition("::")[2].removeprefix("test_")
    return name.replace("[cuda]", "").replace("[cuda-", "[")
