"""nanoGPT-format token files: `train.bin` / `val.bin`, headerless uint16, plus `meta.json`.

`check_dir` runs before any work (no torch) so a bad directory is one line and exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lionbench.errors import UserError

SPLITS = ("train", "val")


def check_dir(path: str, block_size: int, vocab_size: int) -> dict[str, Any]:
    """Validate a token directory for a model of this context and vocabulary; return meta."""
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        raise UserError(
            f"data.dir {path} is not a directory (expected train.bin and val.bin "
            f"made by `lionbench prepare text`)"
        )
    meta: dict[str, Any] = {}
    meta_path = root / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{meta_path} is not valid JSON ({e})") from None
        vocab = meta.get("vocab_size")
        if isinstance(vocab, int) and vocab > vocab_size:
            raise UserError(
                f"{meta_path} has vocab_size {vocab} but the model's is {vocab_size} "
                f"(set recipe.model.vocab_size={vocab} or more)"
            )
    for split in SPLITS:
        f = root / f"{split}.bin"
        if not f.is_file():
            raise UserError(
                f"{f} is missing (data=tokens needs {', '.join(s + '.bin' for s in SPLITS)})"
            )
        size = f.stat().st_size
        if size % 2:
            raise UserError(f"{f} has an odd byte length ({size}): not a uint16 token file")
        if size // 2 < block_size + 1:
            raise UserError(
                f"{f} has {size // 2} tokens, fewer than one window of "
                f"{block_size + 1} (recipe.model.block_size={block_size})"
            )
    return meta


def open_split(path: str, split: str) -> np.ndarray:
    return np.memmap(Path(str(path)).expanduser() / f"{split}.bin", dtype=np.uint16, mode="r")


def windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Rows tokens[s : s + length] for each start s, as int64."""
    return np.stack([np.asarray(tokens[s : s + length], dtype=np.int64) for s in starts])
