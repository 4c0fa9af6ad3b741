"""Where the code that ran came from: the commit recorded as a run's `git_rev`.

Standard library only: setup.py loads this file by path at build time (no torch there) to write
the wheel's revision with the same rules the runtime reads it by.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

REVISION_FILE = "_revision.txt"  # written into wheels by setup.py (`build_py`)


def git_revision() -> str | None:
    """The commit of the code that ran (`-dirty` when its tracked files were modified): from
    git when the package runs from a checkout (an editable install), else the one setup.py
    recorded when the wheel was built (`pip install .`), else None (an sdist built outside git)."""
    package = Path(__file__).resolve().parents[1]  # lionbench/ (this file is in lionbench/run/)
    return checkout_revision(package) or recorded_revision(package)


def checkout_revision(package: Path) -> str | None:
    """Only a checkout whose `lionbench/` is this very package counts: an installed copy inside
    some other repository (a venv under a project) must not report that repository's commit."""

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=5, cwd=package
            )
        return None

    out = git("rev-parse", "--show-toplevel", "--short", "HEAD")
    lines = out.stdout.split() if out is not None and out.returncode == 0 else []
    if len(lines) != 2 or Path(lines[0]).resolve() / package.name != package:
        return None
    diff = git("diff", "--quiet", "HEAD", "--")
    return lines[1] + ("-dirty" if diff is not None and diff.returncode == 1 else "")


def recorded_revision(package: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (package / REVISION_FILE).read_text().strip() or None
    return None
