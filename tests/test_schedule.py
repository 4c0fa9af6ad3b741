"""Learning-rate schedules: warmup, then cosine / linear / rsqrt decay or constant."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import build_lion
from omegaconf import OmegaConf

from lionbench.optim import build_optimizer
from lionbench.optim.schedule import build_scheduler, lr_factor

NAMES = ["cosine", "linear", "rsqrt", "constant"]


def factors(name: str, total: int, warmup: int, final: float) -> list[float]:
    return [lr_factor(s, name=name, total=total, warmup=warmup, final=final) for s in range(total)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("warmup", [1, 4, 10])
def test_warmup_ramp(name, warmup):
    f = factors(name, total=50, warmup=warmup, final=0.1)
    for s in range(warmup):
        assert f[s] == pytest.approx((s + 1) / warmup, abs=1e-15)
    assert f[warmup - 1] == 1.0  # the warmup ends at the full lr
    assert all(0.0 < x <= 1.0 for x in f)


@pytest.mark.parametrize("name", ["cosine", "linear"])
@pytest.mark.parametrize("warmup", [0, 3, 10])
@pytest.mark.parametrize("final", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("total", [12, 100, 1001])
def test_decay_ends_at_final(name, warmup, final, total):
    f = factors(name, total, warmup, final)
    assert f[warmup] == pytest.approx(1.0, abs=1e-15)  # the decay starts at the full lr
    assert f[total - 1] == pytest.approx(final, abs=1e-12)  # ... and ends at the last step
    assert min(f[warmup:]) == pytest.approx(final, abs=1e-12)
    # past the end (e.g. a resumed run with more steps) it stays at the floor
    assert lr_factor(total + 5, name=name, total=total, warmup=warmup, final=final) == (
        pytest.approx(final, abs=1e-12)
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("warmup", [0, 5])
def test_monotone_after_warmup(name, warmup):
    f = factors(name, total=200, warmup=warmup, final=0.05)
    after = f[max(warmup - 1, 0) :]
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(after))
    if name != "constant":
        assert after[-1] < after[0]  # it does decay


def test_constant_is_one():
    assert factors("constant", total=30, warmup=0, final=0.1) == [1.0] * 30
    f = factors("constant", total=30, warmup=6, final=0.1)
    assert f[5:] == [1.0] * 25


def test_cosine_and_linear_shapes():
    """Values in the middle of the decay against the closed forms."""
    total, warmup, final = 22, 1, 0.2  # progress = (step - 1) / 20
    for step in range(warmup, total):
        progress = (step - warmup) / (total - warmup - 1)
        cos = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
        lin = 1 - (1 - final) * progress
        kw = {"total": total, "warmup": warmup, "final": final}
        assert lr_factor(step, name="cosine", **kw) == pytest.approx(cos, abs=1e-14)
        assert lr_factor(step, name="linear", **kw) == pytest.approx(lin, abs=1e-14)
    # halfway: cosine and linear agree at the midpoint (final + (1 - final) / 2)
    mid = warmup + (total - warmup - 1) // 2
    kw = {"total": total, "warmup": warmup, "final": final}
    assert lr_factor(mid, name="cosine", **kw) == pytest.approx(0.6, abs=1e-14)
    assert lr_factor(mid, name="linear", **kw) == pytest.approx(0.6, abs=1e-14)


def test_rsqrt():
    # warmup 4: factor sqrt(4 / (step + 1)) after it, continuous with the warmup's 1.0 at step 3
    for step in range(4, 200):
        expected = max(0.1, math.sqrt(4 / (step + 1)))
        got = lr_factor(step, name="rsqrt", total=200, warmup=4, final=0.1)
        assert got == pytest.approx(expected, abs=1e-15)
    assert lr_factor(399, name="rsqrt", total=500, warmup=4, final=0.1) == 0.1  # the floor
    # no warmup: 1 / sqrt(step + 1)
    assert lr_factor(0, name="rsqrt", total=10, warmup=0, final=0.0) == 1.0
    assert lr_factor(8, name="rsqrt", total=10, warmup=0, final=0.0) == pytest.approx(1 / 3)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(3, name="step", total=10, warmup=0, final=0.0)


def _sched_cfg(name, warmup, final):
    return OmegaConf.create({"name": name, "warmup_steps": warmup, "final_lr_frac": final})


@pytest.mark.parametrize("name", NAMES)
def test_build_scheduler_sets_lr(name):
    """On a real optimizer, the lr of every group is base * factor at each update."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    cfg = OmegaConf.create(
        {
            "name": "lion",
            "impl": "lion_pytorch",
            "lr": 3e-3,
            "weight_decay": 0.1,
            "betas": [0.9, 0.99],
        }
    )
    opt = build_optimizer(cfg, model)
    opt.param_groups[1]["lr"] = 1e-3  # a second base lr
    total, warmup, final = 40, 6, 0.1
    sched = build_scheduler(opt, _sched_cfg(name, warmup, final), total)
    bases = [3e-3, 1e-3]
    seen = []
    for step in range(total):
        f = lr_factor(step, name=name, total=total, warmup=warmup, final=final)
        for group, base in zip(opt.param_groups, bases, strict=True):
            assert group["lr"] == pytest.approx(base * f, rel=1e-12, abs=0)
        seen.append(opt.param_groups[0]["lr"])
        model(torch.randn(2, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    assert seen[0] == pytest.approx(3e-3 / warmup)
    assert max(seen) == pytest.approx(3e-3)
    if name in ("cosine", "linear"):
        assert seen[-1] == pytest.approx(3e-3 * final)


def test_build_scheduler_state_roundtrip():
    """A resumed scheduler continues the same sequence (its state is in checkpoints)."""
    p = torch.nn.Parameter(torch.zeros(2, 2))
    cfg = _sched_cfg("cosine", 3, 0.0)
    opt = build_lion("lion_pytorch", [{"params": [p]}], 1.0, (0.9, 0.99))
    sched = build_scheduler(opt, cfg, 20)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_lion("lion_pytorch", [{"params": [p]}], 1.0, (0.9, 0.99))
    sched2 = build_scheduler(opt2, cfg, 20)
    sched2.load_state_dict(state)
    for step in range(7, 20):
        f = lr_factor(step, name="cosine", total=20, warmup=3, final=0.0)
        assert opt.param_groups[0]["lr"] == pytest.approx(f, abs=1e-15)
        assert sched2.get_last_lr()[0] == pytest.approx(f, abs=1e-15)
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
