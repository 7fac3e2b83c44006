"""What a launch did, said at its end: which runs finished, which were skipped because another process holds them,
and which failed — with an exit status a requeue can act on.

Each job of the runner leaves ``outcome.json`` in its Hydra output folder (`note`); a single run summarises itself,
a `-m` sweep is summarised by the `SweepSummary` callback once every job has run (`configs/config.yaml` registers it;
with the submitit launcher the jobs' folders are read the same way). Exit status: 0 when every run is finished
(by this launch or, by the time the sweep ends, by the process that held it), `EXIT_FAILED` when a run failed or
lost its claim, else `EXIT_UNFINISHED` when a run was skipped because another live process holds it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

from hydra.experimental.callback import Callback

from experiments.runner import records
from experiments.runner.atomic import write_text_atomic

log = logging.getLogger("experiments.runner.sweep_summary")

OUTCOME_FILE = "outcome.json"
FINISHED, CLAIMED, LOST, FAILED = "finished", "claimed", "lost_claim", "failed"
EXIT_FAILED = 1
EXIT_UNFINISHED = 75  # EX_TEMPFAIL: nothing broke, but a run is not finished yet; run the same command again later


def outcome_of(record: dict) -> str:
    if record.get("skipped") == "claimed":
        return CLAIMED
    return FINISHED if record.get("status") == "finished" else FAILED


def note(output_dir: Path, run_id: Optional[str], run_dir: Optional[Path], outcome: str, detail: str = "") -> dict:
    """Leave this job's outcome in its output folder, for the summary at the end of the sweep."""
    entry = {"run_id": run_id, "run_dir": str(run_dir) if run_dir else None, "outcome": outcome, "detail": detail}
    write_text_atomic(Path(output_dir) / OUTCOME_FILE, json.dumps(entry))
    return entry


def read_outcomes(sweep_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(sweep_dir).rglob(OUTCOME_FILE))]


def settled(entry: dict) -> dict:
    """A run skipped because it was claimed counts as finished when its record says so by now."""
    if entry["outcome"] == CLAIMED and entry.get("run_dir"):
        try:
            record = records.read(Path(entry["run_dir"]) / "record.json") or {}
        except ValueError:
            record = {}
        if record.get("status") == "finished":
            return {**entry, "outcome": FINISHED, "detail": "finished by the process that held it"}
    return entry


def summarize(entries: list[dict]) -> tuple[str, int]:
    """(the summary text, the exit status) of a launch's outcomes."""
    entries = [settled(e) for e in entries]
    counts = {kind: [e for e in entries if e["outcome"] == kind] for kind in (FINISHED, CLAIMED, LOST, FAILED)}
    lines = [
        f"summary of {len(entries)} run(s): {len(counts[FINISHED])} finished, {len(counts[CLAIMED])} skipped "
        f"because another process holds them, {len(counts[LOST])} lost their claim, {len(counts[FAILED])} failed"
    ]
    for kind in (CLAIMED, LOST, FAILED):
        lines += [f"  {kind}: {e['run_id'] or '?'} {e['detail']}".rstrip() for e in counts[kind]]
    if not entries:
        lines = ["summary: no run reported an outcome"]
    code = EXIT_FAILED if counts[LOST] or counts[FAILED] or not entries else EXIT_UNFINISHED if counts[CLAIMED] else 0
    if code == EXIT_UNFINISHED:
        lines.append(
            "  not every run is finished: run the same command again once their owners are done "
            "(or use lock.if_claimed=wait)"
        )
    return "\n".join(lines), code


def report(entries: list[dict]) -> int:
    text, code = summarize(entries)
    (log.warning if code else log.info)("%s", text)
    print(text, file=sys.stderr if code else sys.stdout, flush=True)
    return code


class SweepSummary(Callback):
    """Hydra callback: at the end of a `-m` sweep, summarise every job's outcome and exit non-zero unless all
    runs are finished (a `SystemExit`, which Hydra passes on)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        code = report(read_outcomes(Path(config.hydra.sweep.dir)))
        if code:
            raise SystemExit(code)
