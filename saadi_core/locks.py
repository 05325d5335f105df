"""File locks on run directories and stages, so concurrent saadi processes never compute into or
read from half of each other's work.

Two kinds of lock, both :mod:`filelock` locks — on POSIX an ``flock`` the kernel drops when the
process dies, so a lock left by a killed process (``kill -9``, out of memory, power loss on a
local disk) never blocks a later run:

* the **run lock** ``<run>/.run.lock`` — one ``saadi run`` per run directory at a time. A second
  process asking for the same run gets a one-line :class:`RunLockedError` naming the process that
  holds it (read from ``<run>/.run.owner``). Within one process the lock is re-entrant (a study or
  a test resuming a run in-process) and is held until the process exits.
* the **stage lock** ``<stages_dir>/.locks/<stage>-<key12>.lock`` — held around "is it cached? →
  compute → rename into place" (:meth:`saadi_core.store.RunStore.stage`). A shared stage store
  (``saadi study`` workers) computes every stage once: other workers wait, then find the result.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from saadi_core.errors import SaadiError

RUN_LOCK = ".run.lock"
RUN_OWNER = ".run.owner"
LOCKS_DIR = ".locks"
#: seconds between "still waiting" checks while another process computes a stage
WAIT_POLL_S = 2.0

_run_locks: dict[Path, FileLock] = {}


class RunLockedError(SaadiError):
    """Another live process holds the run directory."""


def held_runs() -> list[Path]:
    """Run directories this process holds (what an interrupted CLI names as the place to resume)."""
    return list(_run_locks)


def lock_run(root: Path) -> None:
    """Take the run lock of ``root`` for the rest of this process, or raise :class:`RunLockedError`
    at once if another process holds it (waiting would look like a hang: the other run may take
    hours)."""
    root = Path(root).resolve()
    if root in _run_locks:
        return
    lock = FileLock(root / RUN_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = (
            (root / RUN_OWNER).read_text(encoding="utf-8").strip()
            if (root / RUN_OWNER).is_file()
            else "another process"
        )
        raise RunLockedError(
            f"run directory {root} is in use by {owner}; wait for it to finish or choose another --name"
        ) from None
    (root / RUN_OWNER).write_text(
        f"pid {os.getpid()} on {socket.gethostname()}\n", encoding="utf-8"
    )
    _run_locks[root] = lock


def release_run(root: Path) -> None:
    """Give the run lock of ``root`` back before the process ends (tests, long-lived callers)."""
    lock = _run_locks.pop(Path(root).resolve(), None)
    if lock is not None:
        lock.release(force=True)


def stage_lock_path(stages_dir: Path, name: str, key: str) -> Path:
    return Path(stages_dir) / LOCKS_DIR / f"{name}-{key[:12]}.lock"


@contextmanager
def stage_lock(
    stages_dir: Path, name: str, key: str, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the lock of one stage result; waits (saying so once through ``on_wait``) while another
    process computes the same stage."""
    path = stage_lock_path(stages_dir, name, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(
                f"stage {name} is being computed by another process; waiting to reuse its result"
            )
        while True:
            try:
                lock.acquire(timeout=WAIT_POLL_S)
                break
            except Timeout:
                continue
    try:
        yield
    finally:
        lock.release()


def try_stage_lock(stages_dir: Path, name: str, key12: str) -> FileLock | None:
    """The stage lock if nobody holds it right now, else ``None`` (for cleaning leftovers)."""
    path = stage_lock_path(stages_dir, name, key12)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock
