"""What the tests share besides fixtures: running lionbench as a user would (in this process or
as the real command line), and reading a run directory the way the tests check it. A plain
module (pytest advises against importing conftest.py): `from helpers import run_cli, ...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SMOKE = ["scale=smoke", "logger.wandb.mode=disabled"]


def run_inprocess(results: Path, *overrides: str) -> int:
    """`lionbench run scale=smoke ...` in this process (fast: torch is already imported)."""
    from lionbench.run.launch import main

    return main([*SMOKE, f"results_dir={results}", *overrides])


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess, as a user would type it (`env`: extra
    environment variables)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lionbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def run_dirs(results: Path) -> list[Path]:
    """The run directories under a results directory (`<results>/<recipe>/<run>`)."""
    from lionbench.run.rundir import CONFIG

    return sorted(p.parent for p in results.glob(f"*/*/{CONFIG}"))


def summary(run_dir: Path) -> dict:
    """summary.json, as the JSON a user reads."""
    from lionbench.run.rundir import RunDir

    return json.loads(RunDir(run_dir).summary.read_text())


def metrics(run_dir: Path) -> list[dict]:
    """Every record of metrics.jsonl (a torn line fails the test)."""
    from lionbench.run.rundir import RunDir

    return [json.loads(line) for line in RunDir(run_dir).metrics.read_text().splitlines()]


def build_lion(impl: str, groups: list, lr: float, betas: tuple) -> object:
    """A Lion implementation from the registry over ready-made parameter groups."""
    from lionbench.optim import build_from_groups

    cfg = {"name": "lion", "impl": impl, "lr": lr, "betas": betas, "weight_decay": 0.0}
    return build_from_groups(cfg, groups)


def build_adamw(impl: str, groups: list, lr: float, betas: tuple, eps: float) -> object:
    """An AdamW implementation from the registry over ready-made parameter groups."""
    from lionbench.optim import build_from_groups

    cfg = {"name": "adamw", "impl": impl, "lr": lr, "betas": betas, "eps": eps, "weight_decay": 0}
    return build_from_groups(cfg, groups)


def cli_inprocess(*args: str) -> int:
    """`lionbench ARGS` in this process, through the command line's entry point (bad input is
    one `error:` line on stderr, for capsys): its exit code."""
    from lionbench.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0
