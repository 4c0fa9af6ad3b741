"""One process at a time per run directory.

A launcher's retry, a SLURM requeue while the old job still runs, or two sweeps over one results
root must not train the same run twice: both would resume from one checkpoint and interleave
their records in one metrics.jsonl. The lock is an advisory `flock` on `<run dir>/.lock`, which
the kernel releases when its holder dies (so a killed run's lock is taken over by the next
command), and the file names the holder (pid, host, start) for the message a second command
prints. The file itself stays: removing it would let two processes lock two different files.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from lionbench.errors import UserError, disk_full_error, is_disk_full
from lionbench.run.rundir import RunDir

# Set for torchrun's workers by the orchestrator, which holds the lock of this run directory.
HELD_ENV = "LIONBENCH_RUN_LOCKED"


class RunLock:
    """`with RunLock(rundir):` trains alone, or raises UserError naming the holder."""

    def __init__(self, rundir: RunDir, enabled: bool = True) -> None:
        self.path = rundir.lock
        self.enabled = enabled and os.environ.get(HELD_ENV) != str(rundir.path)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(in_progress(self.path)) from None
        holder = {"pid": os.getpid(), "host": platform.node(), "since": _now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise disk_full_error(e, self.path) if is_disk_full(e) else e from e
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def in_progress(lock_path: Path) -> str:
    """The line for a run directory that another process is training."""
    holder: dict = {}
    with contextlib.suppress(OSError, ValueError):
        holder = json.loads(lock_path.read_text() or "{}")
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    return (
        f"{lock_path.parent} is being trained by another process ({who}, since "
        f"{holder.get('since', '?')}); wait for it to finish or stop it, then run again"
    )


def check_free(rundir: RunDir) -> None:
    """Refuse, before any work, a run directory whose lock another process holds."""
    path = rundir.lock
    if not path.exists():
        return
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise UserError(in_progress(path)) from None
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
