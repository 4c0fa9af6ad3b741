"""Where lionbench keeps what it generates once per machine: builtin datasets, compiled kernels."""

from __future__ import annotations

import os
from pathlib import Path


def lionbench_cache(name: str) -> Path:
    """`$LIONBENCH_CACHE/<name>`, by default under ~/.cache/lionbench."""
    root = os.environ.get("LIONBENCH_CACHE") or Path.home() / ".cache" / "lionbench"
    return Path(root) / name
