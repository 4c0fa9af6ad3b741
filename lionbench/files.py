"""How lionbench writes files, and where it keeps what it makes once per machine.

Every file a result depends on (summaries, configs, checkpoints, manifests, reports, token
files) is written atomically: a temporary file in the same directory, fsync, rename. A kill at
any moment leaves the old file or the new one, never half of one, and a full disk names the file
it could not write. The cache (`$LIONBENCH_CACHE`, default ~/.cache/lionbench) holds the builtin
datasets and compiled kernels. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from lionbench.errors import disk_full_error, is_disk_full


class _WriteRecorder:
    """A binary file that remembers the OSError of a failed write. torch.save swallows it and
    raises `[enforce fail at inline_container.cc] unexpected pos` instead, which never says
    that the disk is full."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()


def _file_mode() -> int:
    """The mode open() would give a new file under the user's umask (mkstemp's is 0600, which
    hides summaries and reports from the rest of a group on a shared cluster)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the same directory, fsync and rename: never half-written,
    whenever the process is killed, and a failed write (a full disk) leaves the previous file
    as it was. `write` fills the open binary file. A full disk raises OSError(ENOSPC) naming
    `path`, whatever the writer made of it."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(e, path) from e
        raise
    recorder = None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            recorder = _WriteRecorder(f)
            write(cast(BinaryIO, recorder))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        cause = recorder.error if recorder is not None and recorder.error is not None else e
        if isinstance(cause, OSError) and is_disk_full(cause):
            raise disk_full_error(cause, path) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def lionbench_cache(name: str) -> Path:
    """`$LIONBENCH_CACHE/<name>`, by default under ~/.cache/lionbench."""
    root = os.environ.get("LIONBENCH_CACHE") or Path.home() / ".cache" / "lionbench"
    return Path(root) / name


def json_safe(value: Any) -> Any:
    """Non-finite floats become strings ("nan", "inf") so files stay strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, value: Any) -> None:
    """Indented strict JSON (`json_safe`), atomically: manifests and benchmark rows."""
    atomic_write_text(path, json.dumps(json_safe(value), indent=2) + "\n")
