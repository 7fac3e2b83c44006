"""The report of bench/gpu_check.py and its time budgets: `Check` runs each case under its section's budget (stopping
one that runs past it), records its outcome and rewrites the JSON report atomically after every case, so a run cut
short still reports everything it finished; `summary_table` prints a report, finished or cut off.
"""

from __future__ import annotations

import contextlib
import gc
import json
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

# Worst first: the summary table's order, and what makes main() exit 1 (the first three).
STATUSES = ("FAIL", "error", "overrun", "skipped", "measured", "pass")


class CaseOverrun(BaseException):
    """Raised inside a case when its section's time runs out.

    A BaseException, like KeyboardInterrupt: the code under test catches Exception in places (the Triton guard falls
    back to torch on any Exception) and must not take a deadline for a kernel failure.
    """


@contextlib.contextmanager
def _stop_after(seconds: float):
    """Raise CaseOverrun in this thread after ``seconds``; without SIGALRM or off the main thread, no limit."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise CaseOverrun

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Check:
    """Runs cases under section budgets and keeps the report on disk current after every case."""

    def __init__(
        self, path: Path, budget_s: float, clock=time.monotonic, meta: dict | None = None, options: dict | None = None
    ):
        self.path, self.clock = path, clock
        self.options = options or {}  # what the sections read from the command line (bench_methods)
        self.deadline = clock() + budget_s
        self.section_deadline = self.deadline
        self.section_name = None
        self.report = {
            "check": "gpu_check",
            "created": _now(),
            "budget_s": budget_s,
            **(meta or {}),
            "status": "running",
            "cases": [],
            "sections": {},
        }

    def start_section(self, name: str, budget_s: float):
        self.section_name = name
        self.section_deadline = min(self.clock() + budget_s, self.deadline)
        self.report["sections"][name] = {"budget_s": budget_s, "started_s": self._elapsed()}
        self.write()

    def case(self, name: str, function, *args, expect_s: float = 0.0, **kwargs) -> dict:
        """Run ``function`` (returns a dict with ``ok``: True/False, or None for a measurement) and record it.

        Skipped when fewer than ``expect_s`` seconds (the case's expected duration) are left in the budget; stopped
        (status ``overrun``) if it is still running when the section's or the whole run's budget runs out.
        """
        entry = {"section": self.section_name, "name": name}
        finish = self.clock() + expect_s
        if finish >= self.section_deadline:
            entry.update(status="skipped", detail=f"not started: {self.whose_budget(finish)} time budget was spent")
            return self._record(entry)
        started = self.clock()
        try:
            with _stop_after(self.section_deadline - started):
                result = function(*args, **kwargs) or {}
            ok = result.pop("ok", None)
            entry.update(
                status={True: "pass", False: "FAIL", None: "measured"}[ok], detail=result.pop("detail", ""), **result
            )
        except CaseOverrun:
            entry.update(
                status="overrun",
                detail=f"stopped after {self.clock() - started:.1f} s: "
                f"{self.whose_budget(self.clock())} time budget ran out",
            )
            _release_memory()
        except Exception as error:  # one broken case must not hide the others
            entry.update(
                status="error",
                detail=f"{type(error).__name__}: {str(error)[:300]}",
                traceback=traceback.format_exc()[-2000:],
            )
        entry["seconds"] = round(self.clock() - started, 3)
        return self._record(entry)

    def record(self, name: str, status: str, detail: str = "", **fields) -> dict:
        """Record an outcome found outside ``case``: a test that the gpu_tests section's child process ran."""
        return self._record({"section": self.section_name, "name": name, "status": status, "detail": detail, **fields})

    def whose_budget(self, moment: float) -> str:
        return "the whole run's" if moment >= self.deadline else f"section {self.section_name}'s"

    def _record(self, entry: dict) -> dict:
        self.report["cases"].append(entry)
        self.report["elapsed_s"] = self._elapsed()  # a report cut off later still says how far it got
        self.write()
        print(f"  [{entry['status']:>8}] {entry['section']}: {entry['name']} {entry.get('detail', '')}", flush=True)
        return entry

    def finish(self):
        self.report.update(status="finished", elapsed_s=self._elapsed(), counts=_counts(self.report["cases"]))
        self.write()

    def write(self):
        from gpart.io import _atomic_write  # the library's own atomic write (experiments/ needs Hydra)

        text = json.dumps(self.report, indent=1, default=_jsonable)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, lambda temporary: Path(temporary).write_text(text))

    def _elapsed(self) -> float:
        return round(self.clock() - (self.deadline - self.report["budget_s"]), 2)


def _counts(cases: list[dict]) -> dict:
    counts = {}
    for entry in cases:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts


def _release_memory():
    """After a stopped case: drop what it left behind, so that the next case has the GPU's memory."""
    gc.collect()
    if "torch" in sys.modules:  # empty_cache does nothing where CUDA was never initialised
        sys.modules["torch"].cuda.empty_cache()


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summary_table(report: dict, width: int = 118) -> str:
    """One line per case (failures and errors first), then the counts: what the device tool's output tail shows.

    Works on a report read back from disk, finished or cut off (``--summary PATH``).
    """
    order = {status: rank for rank, status in enumerate(STATUSES)}
    ranked = sorted(enumerate(report["cases"]), key=lambda item: (order.get(item[1]["status"], len(order)), item[0]))
    lines = [f"{'status':<9}{'section':<16}{'case':<44}detail", "-" * width]
    for _, case in ranked:
        line = (
            f"{case['status']:<9}{case['section'] or '':<16}{_shortened(case['name'], 43):<44}{case.get('detail', '')}"
        )
        lines.append(line[:width])
    counts = ", ".join(f"{n} {s}" for s, n in sorted((report.get("counts") or _counts(report["cases"])).items()))
    state = report["status"] if report["status"] == "finished" else f"cut off ({report['status']} at its last case)"
    lines += [
        "-" * width,
        f"gpu_check {state} in {report.get('elapsed_s', '?')} s on {report.get('device', '?')}: {counts}",
    ]
    return "\n".join(lines)


def _shortened(name: str, width: int) -> str:
    """``name`` cut to ``width`` before its `[parameters]`, which tell a test's rows apart, or else at its end."""
    base, bracket, parameters = name.partition("[")
    keep = width - 1 - len(bracket + parameters)
    if len(name) <= width or keep < 8:
        return name[:width]
    return f"{base[:keep]}…{bracket}{parameters}"
