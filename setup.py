"""Build hook (everything else is in pyproject.toml): a wheel built from a git checkout records
its commit in `lionbench/_revision.txt`, so that a run's `git_rev` is known after a
non-editable `pip install .`, where the installed package no longer sits in a checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def git(*args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def checkout_revision() -> str | None:
    """Short commit of the checkout, `-dirty` when tracked files differ from it; None outside
    git (an sdist) or without a git executable."""
    head = git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0:
        return None
    diff = git("diff", "--quiet", "HEAD", "--")
    dirty = diff is not None and diff.returncode == 1
    return head.stdout.strip() + ("-dirty" if dirty else "")


class BuildPyWithRevision(build_py):
    """build_py, then the revision file beside the package's modules."""

    def run(self) -> None:
        super().run()
        revision = checkout_revision()
        if revision and not self.dry_run:
            (Path(self.build_lib) / "lionbench" / "_revision.txt").write_text(revision + "\n")


setup(cmdclass={"build_py": BuildPyWithRevision})
