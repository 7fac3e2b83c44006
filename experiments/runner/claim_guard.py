"""The question asked before every write of a run: does this process (its rank 0) still own the run?

A run is claimed by rank 0 (`experiments/runner/run_lock.py`). A paused owner whose claim another process took over
must write nothing more for it: no record, adapter or checkpoint. `ClaimGuard.check` raises `ClaimLost` then.
"""

from __future__ import annotations

from typing import Optional

from experiments.runner import distributed, run_lock


class ClaimGuard:
    """Asked before every write of a run. Rank 0 holds the claim (`claim`), the other ranks none; at the points all
    ranks reach together (`collective`: epoch ends, checkpoints, the end) rank 0's answer is shared, so no rank
    writes for a run its owner has lost."""

    def __init__(self, claim: Optional[run_lock.RunClaim] = None):
        self.claim = claim

    def check(self, what: str, collective: bool = False) -> None:
        problem = None
        if self.claim is not None:
            try:
                self.claim.check(what)
            except run_lock.ClaimLost as lost:
                problem = str(lost)
        if collective:
            problem = distributed.share_from_main(problem)
        if problem:
            raise run_lock.ClaimLost(problem)

    def stop_if_lost(self) -> None:
        """Between steps: stop as soon as the heartbeat has seen the claim go (no file access)."""
        if self.claim is not None and self.claim.lost:
            self.check("anything more")
