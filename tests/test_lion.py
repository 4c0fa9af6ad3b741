"""lionbench's own Lion: compiled without recompiling on lr changes, bf16 momentum within a
stated tolerance, and state dicts that move to and from lion-pytorch."""

from __future__ import annotations

import pytest
import torch
from lion_pytorch import Lion as ReferenceLion

from lionbench.optim.lion import Lion


def _problem(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(32, 16), (16,), (4, 3, 5)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(12)]
    return params, grads


def _steps(opt, params, grads, lrs=None):
    for i, gs in enumerate(grads):
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[i]
        opt.step()


def test_lr_changes_do_not_recompile():
    params, grads = _problem()
    opt = Lion([{"params": params, "weight_decay": 0.1}], lr=1e-2, fuse_below=0)  # compiled path
    _steps(opt, params, grads[:2])  # compile for these dtypes (static, then dynamic shapes)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    before = dict(torch._dynamo.utils.counters["stats"])
    _steps(opt, params, grads[2:], lrs=[1e-2 * 0.9**i for i in range(10)])
    after = dict(torch._dynamo.utils.counters["stats"])
    assert after.get("unique_graphs", 0) == before.get("unique_graphs", 0)


@pytest.mark.parametrize("first,second", [("reference", "lionbench"), ("lionbench", "reference")])
def test_state_dict_moves_between_implementations(first, second):
    """5 steps with one implementation, save, load into the other, 5 more: the same as 10
    steps of the reference alone (float64, exact up to rounding)."""
    make = {
        "reference": lambda ps: ReferenceLion(ps, lr=1e-2, weight_decay=0.1),
        "lionbench": lambda ps: Lion(ps, lr=1e-2, weight_decay=0.1),
    }
    params, grads = _problem()
    opt = make[first](params)
    _steps(opt, params, grads[:5])
    state = opt.state_dict()
    assert set(state["state"][0]) == {"exp_avg"}
    opt2 = make[second](params)
    opt2.load_state_dict(state)
    _steps(opt2, params, grads[5:10])

    ref_params, _ = _problem()
    ref = ReferenceLion(ref_params, lr=1e-2, weight_decay=0.1)
    _steps(ref, ref_params, grads[:10])
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            opt2.state[p]["exp_avg"], ref.state[q]["exp_avg"], rtol=1e-12, atol=1e-12
        )


def test_bf16_momentum_stays_close_to_fp32():
    """bf16 momentum (8 mantissa bits) rounds m each step, and with beta2 = 0.99 each step adds
    only 1% of g, so small increments are partly lost. Stated tolerance over 12 steps: the
    momentum within 2% of its largest magnitude, and fewer than 2% of the parameters off the
    fp32-momentum trajectory by more than one update (lr)."""
    lr = 1e-2
    p32, grads = _problem(torch.float32, seed=3)
    pbf, _ = _problem(torch.float32, seed=3)
    exact = Lion(p32, lr=lr, weight_decay=0.1)
    approx = Lion(pbf, lr=lr, weight_decay=0.1, momentum_dtype=torch.bfloat16)
    _steps(exact, p32, grads)
    _steps(approx, pbf, grads)
    for a, b in zip(p32, pbf, strict=True):
        m32, m16 = exact.state[a]["exp_avg"], approx.state[b]["exp_avg"]
        assert m16.dtype == torch.bfloat16 and m32.dtype == torch.float32
        assert (m16.float() - m32).abs().max() <= 0.02 * m32.abs().max()
        off = ((a - b).abs() > 1.01 * lr).float().mean().item()
        assert off < 0.02
    assert approx.state[pbf[0]]["exp_avg"].element_size() == 2  # half the state memory


def test_rejects_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr"):
        Lion(p, lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        Lion(p, betas=(1.0, 0.99))


def test_bench_optim_command(tmp_path):
    from conftest import run_cli

    out = tmp_path / "bench.json"
    res = run_cli(
        "bench",
        "optim",
        "--params",
        "flat:100000",
        "--steps",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--impls",
        "lion:lionbench,lion:lion_pytorch,adamw:fused",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    import json

    rows = {r["impl"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"lion:lionbench", "lion:lion_pytorch", "adamw:fused"}
    for r in rows.values():
        assert r["n_params"] == 100_000 and r["ms_min"] <= r["ms_per_step"] <= r["ms_max"]
        assert r["effective_gb_s"] == pytest.approx(
            r["bytes_per_param"] * 1e5 / (r["ms_per_step"] / 1e3) / 1e9
        )
    assert rows["adamw:fused"]["vs_adamw_fused"] == 1.0
    assert rows["lion:lionbench"]["bytes_per_param"] == 20
    assert "lion:lionbench" in res.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--params", "gpt5"], "unknown --params"),
        (["--params", "flat:0"], "flat:N"),
        (["--impls", "lion:nope"], "unknown --impls"),
        (["--out", "x.txt"], ".csv or .json"),
    ],
)
def test_bench_optim_bad_input(args, expected):
    from conftest import run_cli

    res = run_cli("bench", "optim", "--steps", "1", "--repeats", "1", *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr


@pytest.mark.parametrize("fuse_below", [0, 1 << 20], ids=["compiled-per-tensor", "multi-tensor"])
def test_both_paths_match_lion_pytorch(fuse_below):
    """Large tensors take the compiled kernel, small ones the multi-tensor path: both equal the
    reference implementation in float64 over changing lr and weight decay."""
    params, grads = _problem()
    ref_params, _ = _problem()
    groups = [{"params": params[:2], "weight_decay": 0.3}, {"params": params[2:], "lr": 3e-3}]
    ref_groups = [
        {"params": ref_params[:2], "weight_decay": 0.3},
        {"params": ref_params[2:], "lr": 3e-3},
    ]
    opt = Lion(groups, lr=1e-2, fuse_below=fuse_below)
    ref = ReferenceLion(ref_groups, lr=1e-2)
    lrs = [1e-2 * 0.8**i for i in range(len(grads))]
    _steps(opt, params, grads, lrs)
    _steps(ref, ref_params, grads, lrs)
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            opt.state[p]["exp_avg"], ref.state[q]["exp_avg"], rtol=1e-12, atol=1e-12
        )
