"""The branches a GPU run takes, exercised on this CPU: torch.compile (Inductor's CPU backend)
and bf16 autocast for every recipe, and a GPU image without wandb installed.

What cannot run here (CUDA events, TF32/cuDNN flags, NCCL, Triton, MFU's peak table) is listed
in the README's "GPU readiness without a GPU"."""

from __future__ import annotations

import sys

import pytest
from helpers import run_dirs, run_inprocess, summary

# Two steps: the first compiles (forward and backward), the second runs the compiled graphs.
SHORT = ["train.steps=2", "train.eval_interval=2", "train.log_interval=1", "timing.warmup_steps=1"]


@pytest.mark.parametrize("recipe", ["gpt2", "resnet50", "vit", "unet"])
def test_compile_and_bf16_run_on_cpu(tmp_path, monkeypatch, recipe):
    """`lionbench run recipe=<r> scale=smoke compile=true precision=bf16` completes on a CPU.
    GPT-2 goes through Inductor; the image recipes through Dynamo and AOTAutograd only
    (backend aot_eager): graph capture is where our code can break, and Inductor's CPU C++
    code generation (not what a GPU runs) took up to 97 s per recipe with a cold cache."""
    if recipe != "gpt2":
        import torch

        compile_ = torch.compile
        monkeypatch.setattr(torch, "compile", lambda m, **kw: compile_(m, backend="aot_eager"))
    results = tmp_path / "results"
    code = run_inprocess(
        results, f"recipe={recipe}", "compile=true", "precision=bf16", "device=cpu", *SHORT
    )
    assert code == 0
    (run_dir,) = run_dirs(results)
    s = summary(run_dir)
    assert s["status"] == "completed"
    assert s["compile"] is True and s["precision"] == "bf16"
    assert s["steps"] == 2 and s["final_train_loss"] is not None


def test_without_wandb_installed_wandb_is_off_with_one_line(tmp_path, monkeypatch, capsys):
    """The GPU image has no wandb: a run asking for W&B trains anyway and says so once."""
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    monkeypatch.setattr("lionbench.tracking.wandb_run.WandbLogger.missing_reported", False)
    results = tmp_path / "results"
    for seed in (0, 1):
        code = run_inprocess(results, "logger.wandb.mode=offline", f"seed={seed}", *SHORT)
        assert code == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "W&B is not installed" in line]
    assert lines == ["warning: W&B is not installed: logger.wandb.mode=offline ignored, W&B off"]
    assert [summary(d)["status"] for d in run_dirs(results)] == ["completed", "completed"]
