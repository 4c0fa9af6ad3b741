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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32-C-kernel"])
@pytest.mark.parametrize("first,second", [("reference", "lionbench"), ("lionbench", "reference")])
def test_state_dict_moves_between_implementations(first, second, dtype):
    """5 steps with one implementation, save, load into the other, 5 more: the same as 10
    steps of the reference alone (exact up to rounding; fp32 takes the C kernel)."""
    make = {
        "reference": lambda ps: ReferenceLion(ps, lr=1e-2, weight_decay=0.1),
        "lionbench": lambda ps: Lion(ps, lr=1e-2, weight_decay=0.1),
    }
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    params, grads = _problem(dtype)
    opt = make[first](params)
    _steps(opt, params, grads[:5])
    state = opt.state_dict()
    assert set(state["state"][0]) == {"exp_avg"}
    opt2 = make[second](params)
    opt2.load_state_dict(state)
    _steps(opt2, params, grads[5:10])

    ref_params, _ = _problem(dtype)
    ref = ReferenceLion(ref_params, lr=1e-2, weight_decay=0.1)
    _steps(ref, ref_params, grads[:10])
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)
        torch.testing.assert_close(
            opt2.state[p]["exp_avg"], ref.state[q]["exp_avg"], rtol=tol, atol=tol
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
    from helpers import run_cli

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
    from helpers import run_cli

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


def _fp32_groups(seed: int):
    """Two groups of fp32 tensors: sizes off the 16-element blocks, one large enough for both
    threads, a parameter whose gradient is always zero and one that never gets a gradient."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(70_001,), (3, 5), (257, 300), (1,), (16,), (8, 8)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(8)]
    for gs in grads:
        gs[3].zero_()  # always-zero gradient: sign(0) = 0, weight decay only
        gs[5] = None  # never a gradient: skipped, no state
    groups = [
        {"params": params[:3], "weight_decay": 0.3},
        {"params": params[3:], "lr": 3e-3, "weight_decay": 0.0},
    ]
    return params, groups, grads


@pytest.mark.parametrize("momentum_dtype", [None, torch.bfloat16], ids=["fp32", "bf16-momentum"])
def test_cpu_kernel_is_bitwise_the_eager_rule(momentum_dtype):
    """The C kernel (lion_cpu.c) rounds exactly as the eager update does, in fp32 and with a
    bf16 momentum: same bits for p and m after steps with changing lr, across groups, tails of
    every length and the threaded range split."""
    from lionbench.optim import native

    assert native.library() is not None, "this machine has a C compiler: the kernel must build"
    params, groups, grads = _fp32_groups(seed=4)
    ref_params, ref_groups, _ = _fp32_groups(seed=4)
    opt = Lion(groups, lr=1e-2, momentum_dtype=momentum_dtype)
    ref = Lion(  # every tensor through the eager `_update` (the foreach path uses lerp)
        ref_groups,
        lr=1e-2,
        momentum_dtype=momentum_dtype,
        compiled=False,
        native=False,
        fuse_below=0,
    )
    lrs = [1e-2 * 0.7**i for i in range(len(grads))]
    for i, gs in enumerate(grads):
        for ps in (params, ref_params):
            for p, g in zip(ps, gs, strict=True):
                p.grad = None if g is None else g.clone()
        for o in (opt, ref):
            o.param_groups[0]["lr"] = lrs[i]
            o.step()
    for p, q in zip(params, ref_params, strict=True):
        assert torch.equal(p, q)
        if q in ref.state:
            assert torch.equal(opt.state[p]["exp_avg"], ref.state[q]["exp_avg"])
        else:
            assert p not in opt.state or not opt.state[p]
    assert not torch.equal(params[0], _fp32_groups(seed=4)[0][0])  # it did move


def test_cpu_kernel_matches_lion_pytorch_in_fp32():
    """Against the reference implementation in fp32: the same up to fp32 rounding (lion-pytorch
    multiplies and interpolates in a different order)."""
    params, groups, grads = _fp32_groups(seed=5)
    ref_params, ref_groups, _ = _fp32_groups(seed=5)
    opt, ref = Lion(groups, lr=1e-2), ReferenceLion(ref_groups, lr=1e-2)
    _steps(opt, [p for p in params[:5]], [gs[:5] for gs in grads])
    _steps(ref, [p for p in ref_params[:5]], [gs[:5] for gs in grads])
    for p, q in zip(params[:5], ref_params[:5], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def test_cpu_kernel_skips_what_it_cannot_do():
    """Non-contiguous and non-fp32 parameters take the torch paths, and still follow the rule."""
    base = torch.randn(40, 30)
    strided = torch.nn.Parameter(base.t())  # a transposed view: not contiguous
    half = torch.nn.Parameter(torch.randn(50, dtype=torch.float64))
    ref_strided = torch.nn.Parameter(strided.detach().clone())
    ref_half = torch.nn.Parameter(half.detach().clone())
    opt = Lion([strided, half], lr=1e-2, weight_decay=0.1)
    ref = Lion([ref_strided, ref_half], lr=1e-2, weight_decay=0.1, compiled=False, native=False)
    for _ in range(3):
        g1, g2 = torch.randn(30, 40), torch.randn(50, dtype=torch.float64)
        strided.grad, half.grad, ref_strided.grad, ref_half.grad = g1, g2, g1.clone(), g2.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(strided, ref_strided, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(half, ref_half, rtol=1e-12, atol=1e-12)


def test_without_a_compiler_lion_falls_back(tmp_path):
    """No C compiler: one warning, the torch.compile path, the same result (a fresh process,
    since the kernel is loaded once per process)."""
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from lionbench.optim.lion import Lion\n"
        "p = torch.nn.Parameter(torch.ones(1000)); q = torch.nn.Parameter(torch.ones(1000))\n"
        "a = Lion([p], lr=0.1, weight_decay=0.5); b = Lion([q], lr=0.1, weight_decay=0.5)\n"
        "for _ in range(2):\n"
        "    p.grad = torch.linspace(-1, 1, 1000); q.grad = p.grad.clone(); a.step(); b.step()\n"
        "assert a.native is False and torch.equal(p, q), (p, q)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "CC": "no-such-compiler", "LIONBENCH_CACHE": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "CPU Lion kernel unavailable" in ln]
    assert len(warnings) == 1 and "no C compiler" in warnings[0]
    assert not (tmp_path / "kernels").exists()


def test_cpu_kernel_cache_is_per_machine(tmp_path, monkeypatch):
    """The built library is keyed by the CPU: another CPU's flags build (and name) another."""
    from lionbench.optim import native

    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path))
    native.library.cache_clear()
    try:
        assert native.library() is not None
        first = sorted((tmp_path / "kernels").glob("lion_cpu-*.so"))
        native.library.cache_clear()
        monkeypatch.setattr(native, "_cpu_fingerprint", lambda: "flags: another cpu")
        assert native.library() is not None
        second = sorted((tmp_path / "kernels").glob("lion_cpu-*.so"))
        assert len(first) == 1 and len(second) == 2
        assert not list((tmp_path / "kernels").glob(".build-*"))  # no temporary left behind
    finally:
        native.library.cache_clear()


def test_bf16_momentum_survives_a_checkpoint():
    """Saved and loaded (as a resumed run does), the momentum stays bf16, and the run continues
    bit for bit as if never stopped."""
    params, grads = _problem(torch.float32, seed=6)
    resumed, _ = _problem(torch.float32, seed=6)
    straight = Lion(params, lr=1e-2, weight_decay=0.1, momentum_dtype=torch.bfloat16)
    first = Lion(resumed, lr=1e-2, weight_decay=0.1, momentum_dtype=torch.bfloat16)
    _steps(straight, params, grads)
    _steps(first, resumed, grads[:6])
    second = Lion(resumed, lr=1e-2, weight_decay=0.1, momentum_dtype=torch.bfloat16)
    second.load_state_dict(first.state_dict())
    assert all(s["exp_avg"].dtype == torch.bfloat16 for s in second.state.values())
    _steps(second, resumed, grads[6:])
    for p, q in zip(params, resumed, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(straight.state[p]["exp_avg"], second.state[q]["exp_avg"])


def test_cpu_kernel_updates_shared_parameters_in_turn():
    """Two parameters on one tensor (or one listed twice) are updated one after the other, as
    the eager loop does, not raced on by the kernel's threads."""
    shared = torch.randn(100_000, generator=torch.Generator().manual_seed(7))
    a, b = torch.nn.Parameter(shared), torch.nn.Parameter(shared)
    ref_shared = shared.clone()
    ra, rb = torch.nn.Parameter(ref_shared), torch.nn.Parameter(ref_shared)
    opt = Lion([a, b], lr=1e-2, weight_decay=0.1)
    ref = Lion([ra, rb], lr=1e-2, weight_decay=0.1, compiled=False, native=False, fuse_below=0)
    for step in range(3):
        g1, g2 = (
            torch.randn(100_000, generator=torch.Generator().manual_seed(s)) for s in (step, 9)
        )
        a.grad, b.grad, ra.grad, rb.grad = g1, g2, g1.clone(), g2.clone()
        opt.step()
        ref.step()
    assert torch.equal(a, ra)


def test_cpu_kernel_refuses_a_momentum_of_another_shape():
    """A checkpoint whose exp_avg does not match its parameter (torch does not check shapes on
    load) fails loudly, as the eager update does, instead of writing past the buffer."""
    p = torch.nn.Parameter(torch.randn(1000))
    opt = Lion([p], lr=1e-2)
    opt.state[p]["exp_avg"] = torch.zeros(10)
    p.grad = torch.randn(1000)
    with pytest.raises(RuntimeError):
        opt.step()
