"""Signals: how SIGTERM and SIGINT (what SLURM, submitit and Ctrl-C send) stop runs cleanly.

In a run, `StopFlag` only sets a flag; the loop notices it at the next step boundary (DDP ranks
agree at a log step), checkpoints and ends the run as `interrupted`. In a launcher's worker
process (joblib's loky) a signal between runs is kept in `PENDING` and stops the next run at
once. A command whose launcher runs jobs in worker processes passes the first signal on to them
(`ForwardSignals`), and a run's orchestrator passes it to torchrun (`forwarded_once`). Standard
library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The pid of the process that launched the jobs: a job in another process runs in a worker.
LAUNCHER_PID_ENV = "LIONBENCH_LAUNCHER_PID"


# A stop signal that reached a launcher's worker process outside a run (between jobs, or while
# a job sets up): kept here, it stops the next run at its first step boundary.
PENDING: list[int] = []


def hold_stop_signals() -> None:
    """In a launcher's worker (joblib's loky): SIGTERM/SIGINT outside a run are kept in PENDING
    instead of killing the worker, which the launcher would report as a crashed worker."""

    def keep(signum: int, frame: Any) -> None:
        PENDING.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: nothing to install
            signal.signal(sig, keep)


class StopFlag:
    """SIGTERM/SIGINT handlers that only set a flag, installed for the duration of a run.

    A second Ctrl-C (SIGINT) in a single process falls through to the previous handler, so
    pressing it twice still stops at once; any other repeat is ignored (a DDP worker can get the
    same SIGTERM from the cluster and from torchrun)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        elif signum == signal.SIGINT and int(os.environ.get("WORLD_SIZE", "1")) == 1:
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

    def __enter__(self) -> StopFlag:
        if PENDING:  # a signal came while the run set up: stop at the first step boundary
            self.signum = PENDING[0]
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: the launcher's signals
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def stop_now(
        self, ranks: int, sync_point: bool, agree: Callable[[int | None], int | None]
    ) -> bool:
        """Whether the run stops at this step boundary: one process at the first boundary after
        a signal; DDP ranks only at a sync point (a log step, where they synchronize anyway),
        where `agree` gives every rank the signal any of them received, so that all of them
        stop at the same step."""
        if ranks == 1:
            return self.signum is not None
        if not sync_point:
            return False
        self.signum = agree(self.signum)
        return self.signum is not None


def in_launcher_worker() -> bool:
    """Whether this process is a launcher's worker (started while `ForwardSignals` was on)."""
    return os.environ.get(LAUNCHER_PID_ENV, str(os.getpid())) != str(os.getpid())


class StopWaiting(BaseException):
    """A second signal while a launcher's workers checkpoint: stop waiting for them."""


def child_pids(parent: int | None = None) -> list[int]:
    """The direct children of `parent` (this process), from /proc (Linux); none without it."""
    me, children = parent or os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:  # "pid (command) state ppid ...": the command may hold spaces and parentheses
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == me:
                children.append(int(entry.name))
    return children


class ForwardSignals:
    """SIGTERM/SIGINT to a command whose launcher runs the jobs in worker processes (joblib's
    loky workers): without this the main process dies at once and its workers, orphaned, go on
    with every job left. The first signal is passed to the workers as SIGTERM, so that each run
    in progress checkpoints and ends as interrupted; that ends the launch, which stops the
    workers and starts no further job. A second signal stops waiting (runs still in progress
    resume from their last periodic checkpoint). Resource trackers ignore SIGTERM."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise StopWaiting
        self.signum = signum
        for pid in child_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def __enter__(self) -> ForwardSignals:
        if self.enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError):  # not the main thread
                    self._previous[sig] = signal.signal(sig, self._handle)
            # Workers started from here on know they are workers; and a worker that dies
            # anyway (a signal before it runs a job) reaches main() as an exception, not as
            # Hydra's printed traceback.
            self._env = {k: os.environ.get(k) for k in (LAUNCHER_PID_ENV, "HYDRA_FULL_ERROR")}
            os.environ.update({LAUNCHER_PID_ENV: str(os.getpid()), "HYDRA_FULL_ERROR": "1"})
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        for key, value in getattr(self, "_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def forwarded_once(proc: subprocess.Popen) -> Iterator[None]:
    """While the block runs, the first SIGTERM/SIGINT is passed on to `proc` (torchrun, which
    forwards it to every worker: they checkpoint and stop); later ones are not repeated."""
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if not forwarded:
            forwarded.append(signum)
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
