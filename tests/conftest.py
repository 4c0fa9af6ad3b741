"""Shared fixtures: every test runs offline, with W&B disabled and a private data cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path_factory.getbasetemp() / "lionbench-cache"
    monkeypatch.setenv("LIONBENCH_CACHE", str(cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
