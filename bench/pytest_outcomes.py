"""A pytest plugin that logs each test's outcome the moment it is known, for bench/gpu_check.py's `gpu_tests` section.

    python -m pytest -p bench.pytest_outcomes --outcomes-log PATH ...

Appends one JSON line to PATH for the tests collected (`{"collected": [nodeid, ...]}`), for a module that failed to
collect (`{"collect_error": nodeid, "longrepr": ...}`), for each test started (`{"started": nodeid}`) and for each
test finished (`{"finished": nodeid, "outcome": "passed" | "failed" | "error" | "skipped", "seconds", "message",
"longrepr", "properties"}`; `properties` are what the test gave `record_property`). Each line is written and closed
at once, so a run killed at its deadline still tells which tests finished and which one was running.
"""

from __future__ import annotations

import json
from pathlib import Path


def pytest_addoption(parser):
    parser.addoption(
        "--outcomes-log",
        metavar="PATH",
        default=None,
        help="append one JSON line per collection, test start and test outcome (bench/pytest_outcomes.py)",
    )


def pytest_configure(config):
    path = config.getoption("--outcomes-log")
    if path:
        config.pluginmanager.register(OutcomesLog(Path(path)), "outcomes-log")


class OutcomesLog:
    def __init__(self, path: Path):
        self.path = path
        self.reports: dict[str, list] = {}

    def write(self, entry: dict):
        with self.path.open("a") as log:
            log.write(json.dumps(entry, default=str) + "\n")

    def pytest_collectreport(self, report):
        if report.failed:
            self.write({"collect_error": report.nodeid or "collection", "longrepr": report.longreprtext[-2000:]})

    def pytest_collection_finish(self, session):
        self.write({"collected": [item.nodeid for item in session.items]})

    def pytest_runtest_logstart(self, nodeid, location):
        self.write({"started": nodeid})

    def pytest_runtest_logreport(self, report):
        self.reports.setdefault(report.nodeid, []).append(report)
        if report.when == "teardown":
            self.write(finished(report.nodeid, self.reports.pop(report.nodeid)))


def finished(nodeid: str, reports: list) -> dict:
    """One test's outcome from its setup, call and teardown reports: a failure outside the call is an error."""
    failed = next((report for report in reports if report.failed), None)
    skipped = next((report for report in reports if report.skipped), None)
    outcome, message, longrepr = "passed", "", ""
    if failed is not None:
        outcome, longrepr = ("failed" if failed.when == "call" else "error"), failed.longreprtext
        crash = getattr(failed.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else (longrepr.strip().splitlines() or [""])[-1]
    elif skipped is not None:
        outcome = "skipped"
        reason = skipped.longrepr[2] if isinstance(skipped.longrepr, tuple) else str(skipped.longrepr)
        message = reason.removeprefix("Skipped: ")
    return {
        "finished": nodeid,
        "outcome": outcome,
        "seconds": round(sum(report.duration for report in reports), 3),
        "message": message,
        "longrepr": longrepr[-2000:],
        "properties": dict(reports[-1].user_properties),
    }
