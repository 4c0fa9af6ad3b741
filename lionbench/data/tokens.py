"""nanoGPT-format token files: `train.bin` / `val.bin`, headerless uint16, plus `meta.json`;
and the eval set drawn from a split.

`check_dir` runs before any work (no torch) so a bad directory is one line and exit code 2.

The eval set is made of *tiles*: windows of `block_size + 1` tokens starting at multiples of
`block_size`, so that the targets of two tiles never overlap (a tile's last token is the next
one's first input) and the tiles together predict every token of the split but the first, up to
a tail shorter than one window. A fixed eval set is `n` tiles drawn without replacement by
`data.eval_seed` (a split with fewer tiles is evaluated whole, with a warning);
`train.eval_batches=all` is every tile plus one window over the tail whose
already-predicted targets are ignored: each target of the split exactly once, as harnesses that
report the whole validation split count it. (Before issue 26 the eval windows started anywhere
and were drawn with replacement; the issue found 240 of them reading up to 0.016 above the
whole split.)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from lionbench.errors import UserError

SPLITS = ("train", "val")
DTYPE = np.dtype(np.uint16)
SCAN_CHUNK = 1 << 26  # tokens per slice when scanning a file for its largest id (128 MB)
IGNORE = -100  # a target that no loss counts (F.cross_entropy's default ignore_index)


def check_dir(path: str, block_size: int, vocab_size: int) -> dict[str, Any]:
    """Validate a token directory for a model of this context and vocabulary; return meta.

    Token ids must be below the model's vocab_size (an embedding lookup past it fails deep
    inside a run, on a GPU as an opaque device assert). A `meta.json` vocab_size vouches for
    them; without one, the files are scanned for their largest id."""
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data.dir {path} is not a directory (expected train.bin and val.bin "
            f"made by `lionbench prepare text`)"
        )
    meta = _read_meta(root, vocab_size)
    files = [root / f"{split}.bin" for split in SPLITS]
    for f in files:
        if (f.exists() or f.is_symlink()) and not f.is_file():
            kind = "a directory" if f.is_dir() else "not a regular file (a FIFO, socket or device?)"
            raise UserError(
                f"{f} is {kind}; data=tokens needs a uint16 token file there, as "
                f"`lionbench prepare text` writes"
            )
    missing = [f for f in files if not f.is_file()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        needs = f"data=tokens needs {', '.join(f.name for f in files)}"
        if not found:
            raise UserError(
                f"data.dir {path} is empty ({needs}; make them with "
                f"`lionbench prepare text FILES --out {path}`)"
            )
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise UserError(
            f"{missing[0]} is missing ({needs}, as `lionbench prepare text` writes; found: {shown})"
        )
    for f in files:
        size = f.stat().st_size
        if size % DTYPE.itemsize:
            raise UserError(
                f"{f} has an odd byte length ({size}): not a {DTYPE.name} token file "
                f"(headerless, {DTYPE.itemsize} bytes per token)"
            )
        if size // DTYPE.itemsize < block_size + 1:
            raise UserError(
                f"{f} has {size // DTYPE.itemsize} tokens, fewer than one window of "
                f"{block_size + 1} (recipe.model.block_size={block_size})"
            )
    if "vocab_size" not in meta and vocab_size <= np.iinfo(DTYPE).max:
        for f in files:
            stat = f.stat()
            largest = _largest_id(str(f.resolve()), stat.st_size, stat.st_mtime_ns)
            if largest >= vocab_size:
                raise UserError(
                    f"{f} has token id {largest} but the model's vocabulary is {vocab_size} "
                    f"(ids 0..{vocab_size - 1}): set recipe.model.vocab_size={largest + 1} "
                    f"or more"
                )
    return meta


def meta_vocab(path: str) -> int | None:
    """The vocabulary `meta.json` states (checked as `check_dir` checks it), or None."""
    root = Path(str(path)).expanduser()
    if not (root / "meta.json").is_file():
        return None
    return _read_meta(root, vocab_size=np.iinfo(np.int64).max).get("vocab_size")


def _read_meta(root: Path, vocab_size: int) -> dict[str, Any]:
    """meta.json, when present: an object whose dtype (if given) is uint16 and whose vocab_size
    (if given) fits the model."""
    meta_path = root / "meta.json"
    if not meta_path.exists():
        return {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(
            f'{meta_path} is not a JSON object (expected {{"vocab_size": N, ...}} as '
            f"`lionbench prepare text` writes)"
        )
    dtype = meta.get("dtype", DTYPE.name)
    if dtype != DTYPE.name:
        raise UserError(
            f"{meta_path} has dtype {dtype!r}, but data=tokens reads {DTYPE.name} token files "
            f"(accepted: {DTYPE.name})"
        )
    if "vocab_size" in meta:
        vocab = meta["vocab_size"]
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
            raise UserError(f"{meta_path} has vocab_size {vocab!r}: it must be an integer >= 1")
        if vocab > vocab_size:
            raise UserError(
                f"{meta_path} has vocab_size {vocab} but the model's is {vocab_size} "
                f"(set recipe.model.vocab_size={vocab} or more)"
            )
    return meta


@functools.lru_cache(maxsize=16)
def _largest_id(path: str, size: int, mtime_ns: int) -> int:
    """The largest token id of a file, read in slices (memory stays flat for any size).
    Cached per (path, size, mtime): a multirun checks the same files once per job."""
    data = np.memmap(path, dtype=DTYPE, mode="r")
    return max(int(data[i : i + SCAN_CHUNK].max()) for i in range(0, len(data), SCAN_CHUNK))


def open_split(path: str, split: str) -> np.ndarray:
    return np.memmap(Path(str(path)).expanduser() / f"{split}.bin", dtype=np.uint16, mode="r")


def windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows tokens[s : s + length] for each start s, as int64."""
    return np.stack([np.asarray(tokens[s : s + length], dtype=np.int64) for s in starts])


def n_tiles(n_tokens: int, block_size: int) -> int:
    """Eval tiles a split of `n_tokens` holds: windows of block_size + 1 tokens at multiples of
    block_size, whose targets (every token but the first) never overlap."""
    return (n_tokens - 1) // block_size


def eval_plan(
    n_tokens: int, block_size: int, n_eval: int | None, seed: int
) -> tuple[np.ndarray, int]:
    """(window starts, targets to ignore at the start of the last window) of an eval set.

    `n_eval` tiles (at most all there are) drawn without replacement by `seed` (sorted, for
    sequential reads), or with `n_eval=None` every tile and, when the tiles leave a tail of `r`
    targets, one more window ending at the split's end whose first `block_size - r` targets
    (predicted by the last tile already) are ignored: every token but the first is a target
    exactly once."""
    tiles = n_tiles(n_tokens, block_size)
    if n_eval is not None:
        if n_eval > tiles:
            raise ValueError(f"{n_eval} eval windows asked of {tiles} tiles")
        rng = np.random.Generator(np.random.PCG64(seed))
        return np.sort(rng.choice(tiles, size=n_eval, replace=False)) * block_size, 0
    starts = np.arange(tiles, dtype=np.int64) * block_size
    tail = (n_tokens - 1) - tiles * block_size
    if tail == 0:
        return starts, 0
    return np.append(starts, n_tokens - 1 - block_size), block_size - tail


class EvalWindows:
    """A split's eval set as (x, y) batches of `micro_batch` windows, read from the (memory-
    mapped) split batch by batch at every evaluation, so that `train.eval_batches=all` on a
    large validation split never holds the split on the device. Re-iterable, as `Data.eval`
    must be. `weights` are the targets each batch counts when they differ (None when all are
    equal): evaluation then averages the batches' mean losses weighted by them, which is the
    mean over every target; `targets` is their total."""

    def __init__(
        self,
        split: np.ndarray,
        plan: tuple[np.ndarray, int],
        block_size: int,
        micro_batch: int,
        to_device: Any,
    ) -> None:
        starts, self.ignored = plan
        self.split, self.length, self.to_device = split, block_size + 1, to_device
        self.batches = [starts[i : i + micro_batch] for i in range(0, len(starts), micro_batch)]
        counts = [len(b) * block_size for b in self.batches]
        counts[-1] -= self.ignored
        self.targets = sum(counts)
        self.weights = counts if len(set(counts)) > 1 else None

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        import torch

        for i, starts in enumerate(self.batches):
            rows = torch.from_numpy(windows(self.split, starts, self.length))
            x, y = rows[:, :-1], rows[:, 1:]
            if self.ignored and i == len(self.batches) - 1:
                y = y.clone()
                y[-1, : self.ignored] = IGNORE
            yield self.to_device(x, y)
