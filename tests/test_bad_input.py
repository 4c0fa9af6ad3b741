"""Bad input: one line on stderr naming what is accepted, exit code 2, no traceback, nothing
written."""

from __future__ import annotations

import pytest
from conftest import SMOKE, run_cli

CASES = {
    "unknown recipe": (["recipe=gpt3"], "accepted: gpt2"),
    "unknown optimizer": (["optim=sgd"], "accepted: adamw, lion"),
    "misspelt key": (["optim.lrr=1e-3"], "did you mean 'optim.lr'"),
    "misspelt group key": (["trian.steps=3"], "did you mean 'train'"),
    "negative lr": (["optim.lr=-1"], "optim.lr must be > 0"),
    "beta above one": (["optim.betas=[1.5,0.9]"], "optim.betas[0] must be in [0, 1)"),
    "missing token dir": (["data=tokens", "data.dir=/nonexistent"], "/nonexistent"),
    "token dir unset": (["data=tokens"], "data.dir"),
    "unknown scale": (["scale=huge"], "accepted: full, small, smoke"),
    "unknown impl": (["optim=adamw", "optim.impl=fusd"], "did you mean 'fused'"),
    "zero ratio": (["optim.ratio=0"], "optim.ratio must be > 0"),
    "non-integer steps": (["train.steps=ten"], "train.steps must be an integer"),
    "sweep without -m": (["optim=lion,adamw"], "add -m"),
    "indivisible accumulation": (["train.grad_accum=3"], "divisible"),
    "triton on cpu": (["optim.impl=lion_pytorch_triton", "device=cpu"], "needs a CUDA device"),
    "unknown device": (["device=tpu"], "accepted: auto, cpu, cuda"),
    "bad head count": (["recipe.model.n_head=3"], "divisible"),
}


@pytest.mark.parametrize("overrides,expected", CASES.values(), ids=CASES.keys())
def test_bad_input(tmp_path, overrides, expected):
    results = tmp_path / "results"
    res = run_cli("run", *SMOKE, f"results_dir={results}", *overrides)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert not results.exists()


def test_bad_input_in_one_multirun_point_stops_everything_before_it_starts(tmp_path):
    results = tmp_path / "results"
    res = run_cli("run", "-m", *SMOKE, f"results_dir={results}", "optim.lr=1e-3,-1")
    assert res.returncode == 2 and "optim.lr must be > 0" in res.stderr
    assert not results.exists()


def test_prepare_bad_input(tmp_path):
    res = run_cli("prepare", "text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.txt'} is not a file (give text or .jsonl files)"
    ]
    assert not (tmp_path / "o").exists()
