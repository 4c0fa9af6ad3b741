"""nanoGPT-format token files: `train.bin` / `val.bin`, headerless uint16, plus `meta.json`.

`check_dir` runs before any work (no torch) so a bad directory is one line and exit code 2.
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
