"""Build hook (everything else is in pyproject.toml): a wheel built from a git checkout records
its commit in `lionbench/_revision.txt`, so that a run's `git_rev` is known after a
non-editable `pip install .`, where the installed package no longer sits in a checkout. The rules
are lionbench/run/revision.py's, loaded by path: importing the package would need torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGE = Path(__file__).resolve().parent / "lionbench"


def load_revision_module():
    spec = importlib.util.spec_from_file_location(
        "lionbench_revision", PACKAGE / "run" / "revision.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithRevision(build_py):
    """build_py, then the revision file beside the package's modules."""

    def run(self) -> None:
        super().run()
        revision = load_revision_module()
        commit = revision.checkout_revision(PACKAGE)
        if commit and not self.dry_run:
            (Path(self.build_lib) / "lionbench" / revision.REVISION_FILE).write_text(commit + "\n")


setup(cmdclass={"build_py": BuildPyWithRevision})
