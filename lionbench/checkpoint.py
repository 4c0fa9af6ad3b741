"""One checkpoint per run directory: everything the loop needs to continue bit for bit.

`checkpoint.pt` holds the model, optimizer, schedule and EMA weights, every RNG state, the data
position, the loop's counters and the metrics so far (and how many bytes of metrics.jsonl they
are, so that records written after it are dropped on resume). It is written to a temporary file
and renamed over the previous one, so a kill at any moment leaves either the old checkpoint or
the new one, never half of one, and only the newest is kept.

Signals: SIGTERM and SIGINT (what SLURM, submitit and Ctrl-C send) set a flag; the loop notices it
at the next step boundary, writes a checkpoint and ends the run as `interrupted`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
from pathlib import Path
from typing import Any

import torch

from lionbench.errors import UserError
from lionbench.track import atomic_write

FILENAME = "checkpoint.pt"
# Format 2: the loop's state is LoopState.state_dict(), the run directory's position is "run".
FORMAT = 2
REQUIRED = ("format", "digest", "step", "model", "optimizer", "scheduler", "rng", "data", "loop",
            "run")  # fmt: skip
RESTART = "delete it to restart this run from step 0"


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temporary file, fsync, rename): never half-written. The file carries a
    digest of its content, so that flipped bytes are refused on load, and `state["run"]` names
    the run (its directory name, which ends with the hash of its identity)."""
    content = {"format": FORMAT, **state}
    atomic_write(path, lambda f: torch.save({**content, "digest": content_digest(content)}, f))


def load(path: Path, run_name: str, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's contents (on the CPU), or UserError naming the file when it cannot be
    this run's. `mmap`: map the file instead of reading it (cheap checks of large files)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"checkpoint {path} is unreadable ({first}); {RESTART}") from None
    missing = [k for k in REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(
            f"checkpoint {path} is not a lionbench checkpoint (missing: {', '.join(missing)}); "
            f"{RESTART}"
        )
    if state["format"] != FORMAT:
        raise UserError(
            f"checkpoint {path} has format {state['format']} (accepted: {FORMAT}); {RESTART}"
        )
    content = {k: v for k, v in state.items() if k != "digest"}
    if state["digest"] != content_digest(content):
        raise UserError(f"checkpoint {path} is corrupt (its content digest differs); {RESTART}")
    owner = state["run"].get("name")
    if owner != run_name:
        raise UserError(f"checkpoint {path} belongs to another run ({owner!r}); {RESTART}")
    return state


def check(path: Path) -> None:
    """Refuse an unusable checkpoint before any work starts: unreadable, corrupt, another run's,
    or ahead of its metrics.jsonl (records lost since it was written)."""
    if not path.exists():
        return
    state = load(path, path.parent.name, mmap=True)
    metrics = path.parent / "metrics.jsonl"
    size = metrics.stat().st_size if metrics.is_file() else 0
    if size < state["run"]["metrics_bytes"]:
        raise UserError(
            f"{metrics} is shorter than its checkpoint says ({size} < "
            f"{state['run']['metrics_bytes']} bytes: records were lost); delete {path} to "
            f"restart this run from step 0"
        )


def content_digest(value: Any) -> str:
    """A digest of a checkpoint's content: every tensor's bytes, dtype and shape, and every
    other value, in a fixed order (dict keys sorted), so that it is the same after a load."""
    h = hashlib.blake2b(digest_size=16)

    def feed(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=repr):
                h.update(repr(k).encode())
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, list | tuple):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    """random.setstate wants the tuples it gave; a round trip may have made them lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


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
