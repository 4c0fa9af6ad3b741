"""Shared fixtures: every test runs offline, with W&B disabled and a private data cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = ["scale=smoke", "logger.wandb.mode=disabled"]


@pytest.fixture(autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path_factory.getbasetemp() / "lionbench-cache"
    monkeypatch.setenv("LIONBENCH_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


def run_inprocess(results: Path, *overrides: str) -> int:
    """`lionbench run scale=smoke ...` in this process (fast: torch is already imported)."""
    from lionbench.app import main

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
    return sorted(p.parent for p in results.glob("*/*/config.yaml"))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


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
