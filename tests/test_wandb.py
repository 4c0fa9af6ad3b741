"""W&B: offline files inside the run directory, and a dead server never stops training."""

from __future__ import annotations

import pytest
from conftest import run_dirs, run_inprocess, summary

pytest.importorskip("wandb")


def _wandb_file(run_dir):
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return files[0].read_bytes()


def test_offline_mode_logs_inside_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    assert run_inprocess(tmp_path, "logger.wandb.mode=offline", "train.steps=10") == 0
    (d,) = run_dirs(tmp_path)
    data = _wandb_file(d)
    for key in (b"train/loss", b"val/loss", b"val/ppl", b"train/lr"):  # metrics.jsonl names
        assert key in data, key
    assert summary(d)["run_dir"].encode() in data  # the summary went to W&B too


def test_unreachable_server_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # a closed port: no network
    from lionbench.track import WandbLogger

    monkeypatch.setattr(WandbLogger, "online_failed", False)
    code = run_inprocess(
        tmp_path, "logger.wandb.mode=online", "logger.wandb.init_timeout=5", "train.steps=10"
    )
    assert code == 0
    (d,) = run_dirs(tmp_path)
    assert summary(d)["status"] == "completed"
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "offline" in warnings[0]
    assert b"train/loss" in _wandb_file(d)
