"""One owner per run: a claim file in the run folder, created atomically and kept fresh by a heartbeat.

Two launches of one run (a requeued SLURM job whose first attempt still runs, two people sharing a results folder, a
sweep started twice) must not both train it: the second would resume from checkpoints the first is still writing and
then overwrite its record. Before any work, `claim(run_dir)` creates ``<run_dir>/owner.lock``:

* **atomically on a shared filesystem.** The owner description is written to a file of its own, then hard-linked to
  ``owner.lock``; ``link(2)`` fails with EEXIST when the lock exists, on local disks and over NFS alike (the classic
  NFS-safe lock: ``O_EXCL`` was not atomic before NFSv3 and ``flock`` does not cross nodes on many set-ups). When
  the reply to ``link`` is lost (an NFS retransmission), the link count of our own file says whether it worked.
* **with its owner inside:** host, boot id, pid namespace, pid, the pid's start time, when the claim was made, and a
  heartbeat that a background thread rewrites every ``heartbeat_s`` (atomically, temp file + ``os.replace``).
* **taken over when stale:** a claim whose heartbeat is older than ``stale_after_s`` (its owner died, or its node
  did), or whose owner is a process that no longer exists *in our own pid namespace of this boot of this host*, is
  removed and claimed anew. A pid means nothing across containers that share a hostname (host networking), so an
  owner in another pid namespace is judged by its heartbeat alone. Takeovers are serialised by a second short-lived
  link lock, so two processes never both take over one stale claim.
* **checked before every write:** an owner that finds its claim taken over (it was paused, or its heartbeat could
  not reach the disk, for longer than ``stale_after_s``) raises `ClaimLost` and writes nothing more.

A second launch of a live claim raises `RunClaimed`, whose message names the owner; the runner turns it into one log
line and skips (or, with ``lock.if_claimed=wait``, polls until the claim is released or goes stale). The heartbeat
compares wall clocks across nodes, so ``stale_after_s`` (default 300 s) must exceed the clock skew of the cluster
(NTP keeps it under a second).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger("experiments.runner.run_lock")

LOCK_NAME = "owner.lock"
TAKEOVER_NAME = "owner.lock.takeover"
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_STALE_AFTER_S = 300.0


class ClaimLost(RuntimeError):
    """This process's claim was taken over by another process: the run is no longer ours to write."""


class RunClaimed(RuntimeError):
    """The run folder is claimed by another live process."""

    def __init__(self, run_dir: Path, owner: dict):
        self.run_dir, self.owner = Path(run_dir), owner
        super().__init__(f"{self.run_dir.name} is being run by {describe(owner)}")


def describe(owner: dict) -> str:
    """``pid 123 on node7 since 2026-12-01T09:40:02+00:00 (heartbeat 4 s ago)``."""
    age = time.time() - float(owner.get("heartbeat", 0))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started_at')} (heartbeat {age:.0f} s ago)"


def _process_start_time(pid: int) -> Optional[float]:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # no such process, no permission, no psutil
        return None


def _read_first_line(path: str) -> Optional[str]:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> Optional[str]:
    try:
        return os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return None


def where_pids_mean_something() -> dict:
    """The scope in which a pid names one process: host, boot and pid namespace (None where unknown)."""
    return {
        "host": socket.gethostname(),
        "boot_id": _read_first_line("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": _pid_namespace(),
    }


def shares_our_pids(owner: dict) -> bool:
    """True when the owner's pid can be looked up here: same host, same boot, same pid namespace, all known."""
    here = where_pids_mean_something()
    return all(here[key] is not None and owner.get(key) == here[key] for key in here)


def owner_is_dead(owner: dict, stale_after_s: float, now: Optional[float] = None) -> bool:
    """True when the claim's heartbeat is older than `stale_after_s`, or its owner is a process in our pid namespace
    (this host, this boot) that no longer exists (a pid reused by another process has another start time)."""
    now = time.time() if now is None else now
    if now - float(owner.get("heartbeat", 0)) > stale_after_s:
        return True
    if not shares_our_pids(owner):
        return False  # another node, boot or container: only the heartbeat tells
    started = _process_start_time(int(owner.get("pid", -1)))
    return started is None or abs(started - float(owner.get("pid_started", started))) > 1.0


def read_owner(path: Path) -> Optional[dict]:
    """The owner written in a lock file; None when there is none. A lock whose content cannot be parsed (a
    filesystem that lost its data) counts as a claim with no heartbeat, i.e. a stale one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
        if isinstance(owner, dict):
            return owner
    except json.JSONDecodeError:
        pass
    return {"host": "?", "pid": -1, "started_at": "?", "heartbeat": 0, "token": None, "unreadable": True}


def _link_exclusive(path: Path, content: str) -> bool:
    """Create `path` holding `content` if and only if it does not exist (link-based, NFS-safe). True on success."""
    private = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        private.write_text(content, encoding="utf-8")
    except OSError as error:  # a full disk: leave no half-written private file behind, and say where
        private.unlink(missing_ok=True)
        raise OSError(
            error.errno, f"could not claim {path.parent} ({error.strerror or error}): writing {private.name} failed"
        ) from error
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        # NFS: the link may have been made although the reply was lost; then our file has two names.
        return private.stat().st_nlink == 2
    finally:
        private.unlink(missing_ok=True)


def _write_replace(path: Path, content: str, token: str) -> None:
    temporary = path.with_name(f".{path.name}.{token}.hb")
    temporary.write_text(content, encoding="utf-8")
    os.replace(temporary, path)


@dataclass
class RunClaim:
    """A held claim on one run folder. Use as a context manager, or call `release()`."""

    run_dir: Path
    owner: dict
    heartbeat_s: float
    stale_after_s: float
    took_over: Optional[dict] = None  # the dead owner whose claim this one replaced

    def __post_init__(self):
        self.path = self.run_dir / LOCK_NAME
        self._stop = threading.Event()
        self._lost = False
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat:{self.run_dir.name}", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> bool:
        """True once this process has seen its claim taken over (no file access: cheap enough for every step)."""
        return self._lost

    def check(self, what: str) -> None:
        """Raise `ClaimLost` unless this process still holds the claim; call it before writing `what`."""
        if not self.held:
            owner = read_owner(self.path)
            now = f"now {describe(owner)}" if owner else "its lock is gone"
            raise ClaimLost(
                f"{self.run_dir.name}: this process (pid {os.getpid()}) lost its claim on the run "
                f"({now}), probably because it was paused or cut off for longer than "
                f"lock.stale_after_s={self.stale_after_s:g} s; not writing {what}, stopping"
            )

    @property
    def held(self) -> bool:
        """False once another process has taken the claim over (this one was judged dead): stop writing."""
        if self._lost:
            return False
        current = read_owner(self.path)
        self._lost = current is None or current.get("token") != self.owner["token"]
        return not self._lost

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self.held:
                log.error("lost the claim on %s: %s", self.run_dir, describe(read_owner(self.path) or {}))
                return
            self.owner["heartbeat"] = time.time()
            try:
                _write_replace(self.path, json.dumps(self.owner), self.owner["token"])
            except OSError as error:  # a full disk must not kill the run; the next beat tries again
                log.warning("could not refresh the heartbeat of %s: %s", self.path, error)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        if self.held:
            self.path.unlink(missing_ok=True)
        self.path.with_name(f".{LOCK_NAME}.{self.owner['token']}.hb").unlink(missing_ok=True)

    def __enter__(self) -> "RunClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _new_owner() -> dict:
    now = time.time()
    return {
        **where_pids_mean_something(),
        "pid": os.getpid(),
        "pid_started": _process_start_time(os.getpid()),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "heartbeat": now,
        "token": uuid.uuid4().hex,
    }


def _take_over_stale(run_dir: Path, stale_after_s: float) -> Optional[dict]:
    """Remove the lock if its owner is dead, under the takeover lock. Returns the dead owner, or None."""
    guard = run_dir / TAKEOVER_NAME
    if not _link_exclusive(guard, json.dumps(_new_owner())):
        try:  # a takeover lasts milliseconds: a guard older than stale_after_s was left by a killed process
            if time.time() - guard.stat().st_mtime > stale_after_s:
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return None
    try:
        owner = read_owner(run_dir / LOCK_NAME)
        if owner is None or not owner_is_dead(owner, stale_after_s):
            return None  # released, or refreshed, since we looked
        (run_dir / LOCK_NAME).unlink(missing_ok=True)
        if owner.get("token"):
            (run_dir / f".{LOCK_NAME}.{owner['token']}.hb").unlink(missing_ok=True)
        return owner
    finally:
        guard.unlink(missing_ok=True)


def claim(
    run_dir: str | os.PathLike,
    *,
    wait: bool = False,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    poll_s: Optional[float] = None,
) -> RunClaim:
    """Claim `run_dir` for this process. Raises `RunClaimed` (naming the owner) when a live process holds it, unless
    `wait`, which polls until the claim is released or its owner dies."""
    if not 0 < heartbeat_s < stale_after_s:
        raise ValueError(
            f"lock.heartbeat_s={heartbeat_s} must be positive and below lock.stale_after_s="
            f"{stale_after_s} (the owner must refresh its claim before others call it stale)"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    poll_s = min(heartbeat_s, 5.0) if poll_s is None else poll_s
    took_over, announced = None, False
    while True:
        owner = _new_owner()
        if _link_exclusive(run_dir / LOCK_NAME, json.dumps(owner)):
            return RunClaim(run_dir, owner, heartbeat_s, stale_after_s, took_over)
        current = read_owner(run_dir / LOCK_NAME)
        if current is None:
            continue  # released between our attempt and our look
        if owner_is_dead(current, stale_after_s):
            dead = _take_over_stale(run_dir, stale_after_s)
            if dead is not None:
                took_over = dead
                log.warning("taking over %s from its dead owner, %s", run_dir.name, describe(dead))
            continue
        if not wait:
            raise RunClaimed(run_dir, current)
        if not announced:
            log.info("waiting for %s: %s", run_dir.name, describe(current))
            announced = True
        time.sleep(poll_s)


def orphaned_files(run_dir: Path) -> list[Path]:
    """Lock debris in `run_dir`: the lock and its helper files (none should remain once every process is gone)."""
    return sorted(p for p in Path(run_dir).iterdir() if p.name.startswith((LOCK_NAME, f".{LOCK_NAME}")))
