"""One checkpoint per run directory: everything the loop needs to continue bit for bit.

`checkpoint.pt` holds the model, optimizer, schedule and EMA weights, every RNG state, the data
position, the loop's counters and the metrics so far (and how many bytes of metrics.jsonl they
are, so that records written after it are dropped on resume). It is written to a temporary file
and renamed over the previous one, so a kill at any moment leaves either the old checkpoint or
the new one, never half of one, and only the newest is kept. The loop decides what goes in
(loop/train.py `checkpoint_content`); this module owns the file: its format, digest and checks.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from lionbench.errors import UserError, first_line
from lionbench.files import atomic_write
from lionbench.run.rundir import RunDir

# Format 2: the loop's state is LoopState.state_dict(), the run directory's position is "run".
FORMAT = 2
REQUIRED = ("format", "digest", "step", "model", "optimizer", "scheduler", "rng", "data", "loop",
            "run")  # fmt: skip
RESTART = "delete it to restart this run from step 0"


def save(rundir: RunDir, state: dict[str, Any]) -> None:
    """Write atomically (temporary file, fsync, rename): never half-written. The file carries a
    digest of its content, so that flipped bytes are refused on load, and `state["run"]` names
    the run (its directory name, which ends with the hash of its identity)."""
    content = {"format": FORMAT, **state}
    atomic_write(
        rundir.checkpoint, lambda f: torch.save({**content, "digest": content_digest(content)}, f)
    )


def load(rundir: RunDir, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint's contents (on the CPU), or UserError naming the file when it cannot be
    this run's. `mmap`: map the file instead of reading it (cheap checks of large files)."""
    path, run_name = rundir.checkpoint, rundir.path.name
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        raise UserError(
            f"checkpoint {path} is unreadable ({first_line(e)[:120]}); {RESTART}"
        ) from None
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


def check(rundir: RunDir) -> None:
    """Refuse an unusable checkpoint before any work starts: unreadable, corrupt, another run's,
    or ahead of its metrics.jsonl (records lost since it was written)."""
    path = rundir.checkpoint
    if not path.exists():
        return
    state = load(rundir, mmap=True)
    metrics = rundir.metrics
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
