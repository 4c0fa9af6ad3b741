"""lionbench's Triton Lion (`optim.impl=lionbench_triton`, lionbench/optim/lion_triton.py).

Without a GPU the kernel runs in Triton's CPU interpreter, which Triton selects when a kernel is
defined (TRITON_INTERPRET=1 before lion_triton is imported): `test_under_the_interpreter` runs
this file again in a subprocess with it set. There, and on a CUDA machine directly, the kernel
tests below run: the float64 rule, bits equal to the eager rule in fp32 (also with a bf16
momentum), bf16 parameters, groups, grad-less parameters, lr changed every step, the cached
address table, shared parameters and the state dict of lion-pytorch. Tensors stay small: the
interpreter runs each 1024-element block as numpy code, tens of milliseconds apiece.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("Triton is not installed: lionbench_triton cannot run", allow_module_level=True)

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
kernel_tests = pytest.mark.skipif(
    not INTERPRETED and not torch.cuda.is_available(),
    reason="no CUDA: runs in test_under_the_interpreter's TRITON_INTERPRET=1 subprocess",
)


def _eager(groups, lr, momentum_dtype=None):
    """lion.py's eager `_update` for every tensor (fuse_below=0: no foreach path)."""
    from lionbench.optim.lion import Lion

    return Lion(
        groups, lr=lr, momentum_dtype=momentum_dtype, compiled=False, native=False, fuse_below=0
    )


def _triton(groups, lr, momentum_dtype=None):
    from lionbench.optim import lion_triton

    assert lion_triton.interpreted() == INTERPRETED
    return lion_triton.TritonLion(groups, lr=lr, momentum_dtype=momentum_dtype)


def _params(shapes, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype).to(DEVICE)) for s in shapes
    ]


def _grads(shapes, dtype, seed, steps):
    gen = torch.Generator().manual_seed(seed + 1000)
    return [
        [torch.randn(s, generator=gen, dtype=dtype).to(DEVICE) for s in shapes]
        for _ in range(steps)
    ]


def _step(opt, params, grads, lr):
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.clone()
    opt.param_groups[0]["lr"] = lr
    opt.step()


def _kernel_tensors(opt) -> int:
    """How many tensors the kernel's cached tables cover (0 if all took the eager path)."""
    return sum(t.n_tensors for _, tables in opt._tables.values() for t in tables)


# ------------------------------------------------------------------------------ the kernel


@kernel_tests
def test_float64_rule_groups_schedule_and_no_grad():
    """fp64 through the kernel against a numpy float64 rule: two groups with their own lr and
    wd, lr changed every step, a parameter whose gradient is always zero (decay only) and one
    that never gets a gradient (no state, never moves)."""
    shapes = [(24, 25), (7,), (5, 3), (9,)]
    params = _params(shapes, torch.float64, seed=1)
    init = [p.detach().cpu().numpy().copy() for p in params]
    groups = [
        {"params": params[:2], "weight_decay": 0.7},
        {"params": params[2:], "lr": 0.011, "weight_decay": 0.2},
    ]
    opt = _triton(groups, lr=0.03)
    ref_p, ref_m = [a.copy() for a in init], [np.zeros_like(a) for a in init]
    b1, b2 = 0.9, 0.99
    for step, gs in enumerate(_grads(shapes, torch.float64, seed=1, steps=5)):
        gs[1].zero_()
        gs[3] = None
        lrs = [0.03 * (0.5 + abs(np.cos(step))), 0.011 * (0.5 + abs(np.sin(step)))]
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            group["lr"] = lr
        for i, (p, g) in enumerate(zip(params, gs, strict=True)):
            p.grad = g
            if g is None:
                continue
            lr, wd = (lrs[0], 0.7) if i < 2 else (lrs[1], 0.2)
            gn = g.cpu().numpy()
            c = b1 * ref_m[i] + (1 - b1) * gn
            ref_p[i] = ref_p[i] * (1 - lr * wd) - lr * np.sign(c)
            ref_m[i] = b2 * ref_m[i] + (1 - b2) * gn
        opt.step()
    assert _kernel_tensors(opt) == 3
    for i, p in enumerate(params[:3]):
        np.testing.assert_allclose(p.detach().cpu().numpy(), ref_p[i], rtol=1e-12, atol=1e-12)
        m = opt.state[p]["exp_avg"].cpu().numpy()
        np.testing.assert_allclose(m, ref_m[i], rtol=1e-12, atol=1e-12)
    assert not opt.state[params[1]]["exp_avg"].any()  # always-zero gradient: decay only
    assert np.array_equal(params[3].detach().cpu().numpy(), init[3])
    assert params[3] not in opt.state or not opt.state[params[3]]


@kernel_tests
@pytest.mark.parametrize("momentum_dtype", [None, torch.bfloat16], ids=["fp32", "bf16-momentum"])
def test_fp32_is_bitwise_the_eager_rule(momentum_dtype):
    """fp32 parameters (fp32 or bf16 momentum): the same bits as lion.py's eager `_update`
    after steps with changing lr, across two groups and sizes off the 1024-element blocks."""
    shapes = [(1500,), (3, 5), (1,), (1024,), (8, 8)]
    params, ref_params = _params(shapes, torch.float32, 2), _params(shapes, torch.float32, 2)

    def groups(ps):
        return [
            {"params": ps[:3], "weight_decay": 0.3},
            {"params": ps[3:], "lr": 3e-3, "weight_decay": 0.0},
        ]

    opt = _triton(groups(params), lr=1e-2, momentum_dtype=momentum_dtype)
    ref = _eager(groups(ref_params), lr=1e-2, momentum_dtype=momentum_dtype)
    for step, gs in enumerate(_grads(shapes, torch.float32, seed=2, steps=4)):
        gs[4] = None
        for o, ps in ((opt, params), (ref, ref_params)):
            _step(o, ps, gs, 1e-2 * 0.7**step)
    assert _kernel_tensors(opt) == 4
    for p, q in zip(params, ref_params, strict=True):
        assert torch.equal(p, q)
        if q in ref.state:
            assert torch.equal(opt.state[p]["exp_avg"], ref.state[q]["exp_avg"])
            assert opt.state[p]["exp_avg"].dtype == (momentum_dtype or torch.float32)
    assert not torch.equal(params[0], _params(shapes, torch.float32, 2)[0])  # it did move


@kernel_tests
def test_bf16_parameters_within_the_stated_tolerance():
    """bf16 parameters, math in fp32: bitwise the fp32 rule on widened values rounded to bf16
    (nearest even) once per step; against the float64 rule rounded the same way, every element
    within 2 bf16 ulps and fewer than 2% of them differ at all, over 6 steps."""
    n, lr, wd, b1, b2 = 3000, 1e-2, 0.1, 0.9, 0.99
    (p,) = _params([(n,)], torch.bfloat16, seed=3)
    opt = _triton([{"params": [p], "weight_decay": wd}], lr=lr, momentum_dtype=torch.bfloat16)
    emu, emu_m = p.detach().clone(), torch.zeros_like(p)
    ref, ref_m = p.detach().double(), torch.zeros(n, dtype=torch.float64, device=DEVICE)
    lr32 = torch.tensor(lr, dtype=torch.float32, device=DEVICE)
    wd32 = torch.tensor(wd, dtype=torch.float32, device=DEVICE)
    for (g,) in _grads([(n,)], torch.bfloat16, seed=3, steps=6):
        _step(opt, [p], [g], lr)
        pf, gf, mf = emu.float(), g.float(), emu_m.float()
        c = mf * b1 + gf * (1.0 - b1)
        emu = (pf * (1.0 - lr32 * wd32) - lr32 * torch.sign(c)).bfloat16()
        emu_m = (mf * b2 + gf * (1.0 - b2)).bfloat16()
        gd = g.double()
        c = ref_m * b1 + gd * (1 - b1)
        ref = (ref * (1 - lr * wd) - lr * torch.sign(c)).bfloat16().double()
        ref_m = (ref_m * b2 + gd * (1 - b2)).bfloat16().double()
    assert _kernel_tensors(opt) == 1
    assert torch.equal(p.detach(), emu) and torch.equal(opt.state[p]["exp_avg"], emu_m)
    diff = (p.detach().double() - ref).abs()
    ulp = torch.pow(2.0, torch.floor(torch.log2(ref.abs())) - 7)
    assert (diff <= 2 * ulp).all() and (diff > 0).double().mean() < 0.02


@kernel_tests
def test_many_tiny_tensors_and_a_large_one_in_one_launch():
    """40 tensors of 1 to 40 elements and one of 3000 share one launch (one table, 43 blocks)
    and still give the eager rule's bits."""
    shapes = [(k,) for k in range(1, 41)] + [(3000,)]
    params, ref_params = _params(shapes, torch.float32, 4), _params(shapes, torch.float32, 4)
    opt = _triton([{"params": params, "weight_decay": 0.1}], lr=1e-2)
    ref = _eager([{"params": ref_params, "weight_decay": 0.1}], lr=1e-2)
    for gs in _grads(shapes, torch.float32, seed=4, steps=2):
        _step(opt, params, gs, 1e-2)
        _step(ref, ref_params, gs, 1e-2)
    ((_, tables),) = opt._tables.values()
    assert [(t.n_tensors, t.n_blocks) for t in tables] == [(41, 43)]
    assert all(torch.equal(p, q) for p, q in zip(params, ref_params, strict=True))


@kernel_tests
def test_address_table_is_cached_and_rebuilt_when_a_tensor_changes():
    """The same tensors reuse the table (no host-to-device copy per step); a parameter whose
    storage is replaced, and new gradients elsewhere in memory, get a new table, and the
    result stays the eager rule's."""
    shapes = [(1100,), (6,)]
    params, ref_params = _params(shapes, torch.float32, 5), _params(shapes, torch.float32, 5)
    opt, ref = _triton(params, lr=1e-2), _eager(ref_params, lr=1e-2)
    grads = _grads(shapes, torch.float32, seed=5, steps=4)
    for o, ps in ((opt, params), (ref, ref_params)):
        for p, g in zip(ps, grads[0], strict=True):
            p.grad = g  # the same gradient tensors two steps running
        o.step()
        o.step()
    ((key, (ident, first)),) = opt._tables.items()
    for ps in (params, ref_params):
        ps[0].data = ps[0].data.clone()  # a new storage: the old addresses are stale
    _step(opt, params, grads[1], 1e-2)
    _step(ref, ref_params, grads[1], 1e-2)
    assert opt._tables[key][1][0] is not first[0] and opt._tables[key][0] != ident
    _step(opt, params, grads[2], 1e-2)
    _step(ref, ref_params, grads[2], 1e-2)
    assert all(torch.equal(p, q) for p, q in zip(params, ref_params, strict=True))


@kernel_tests
def test_shared_parameters_are_updated_in_turn():
    """Two parameters on one storage (and one listed with them) are launched one after the
    other, as the eager loop updates them, instead of racing in one launch."""
    shared = _params([(2000,)], torch.float32, 6)[0].detach()
    ref_shared = shared.clone()
    a, b = torch.nn.Parameter(shared), torch.nn.Parameter(shared)
    ra, rb = torch.nn.Parameter(ref_shared), torch.nn.Parameter(ref_shared)
    opt = _triton([{"params": [a, b], "weight_decay": 0.1}], lr=1e-2)
    ref = _eager([{"params": [ra, rb], "weight_decay": 0.1}], lr=1e-2)
    for gs in _grads([(2000,), (2000,)], torch.float32, seed=6, steps=2):
        _step(opt, [a, b], gs, 1e-2)
        _step(ref, [ra, rb], gs, 1e-2)
    ((_, tables),) = opt._tables.values()
    assert [t.n_tensors for t in tables] == [1, 1]
    assert torch.equal(a, ra)


@kernel_tests
@pytest.mark.parametrize("first,second", [("reference", "triton"), ("triton", "reference")])
def test_state_dict_moves_to_and_from_lion_pytorch(first, second):
    """3 steps with one implementation, its state dict loaded into the other, 3 more: the same
    as 6 steps of lion-pytorch alone (float64 through the kernel)."""
    from lion_pytorch import Lion as ReferenceLion

    make = {
        "reference": lambda ps: ReferenceLion(ps, lr=1e-2, weight_decay=0.1),
        "triton": lambda ps: _triton([{"params": ps, "weight_decay": 0.1}], lr=1e-2),
    }
    shapes = [(30, 20), (5,)]
    params, ref_params = _params(shapes, torch.float64, 7), _params(shapes, torch.float64, 7)
    grads = _grads(shapes, torch.float64, seed=7, steps=6)
    opt = make[first](params)
    for gs in grads[:3]:
        _step(opt, params, gs, 1e-2)
    state = opt.state_dict()
    assert set(state["state"][0]) == {"exp_avg"}
    opt2 = make[second](params)
    opt2.load_state_dict(state)
    for gs in grads[3:]:
        _step(opt2, params, gs, 1e-2)
    ref = ReferenceLion(ref_params, lr=1e-2, weight_decay=0.1)
    for gs in grads:
        _step(ref, ref_params, gs, 1e-2)
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(opt2.state[p]["exp_avg"], ref.state[q]["exp_avg"])


@kernel_tests
def test_bf16_momentum_survives_a_checkpoint():
    """Loaded from a state dict, the momentum stays bf16 (lion.py's load_state_dict), the
    table follows the new momentum tensors, and the run continues bit for bit."""
    shapes = [(1200,), (4, 4)]
    params, resumed = _params(shapes, torch.float32, 8), _params(shapes, torch.float32, 8)
    grads = _grads(shapes, torch.float32, seed=8, steps=4)
    straight = _triton(params, lr=1e-2, momentum_dtype=torch.bfloat16)
    first = _triton(resumed, lr=1e-2, momentum_dtype=torch.bfloat16)
    for gs in grads:
        _step(straight, params, gs, 1e-2)
    for gs in grads[:2]:
        _step(first, resumed, gs, 1e-2)
    second = _triton(resumed, lr=1e-2, momentum_dtype=torch.bfloat16)
    second.load_state_dict(first.state_dict())
    assert all(s["exp_avg"].dtype == torch.bfloat16 for s in second.state.values())
    for gs in grads[2:]:
        _step(second, resumed, gs, 1e-2)
    assert _kernel_tensors(second) == 2
    for p, q in zip(params, resumed, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(straight.state[p]["exp_avg"], second.state[q]["exp_avg"])


@kernel_tests
def test_what_the_kernel_cannot_take_goes_eager():
    """A non-contiguous parameter and an fp16 one take the eager rule (same result)."""
    strided = torch.nn.Parameter(_params([(30, 40)], torch.float32, 9)[0].detach().t())
    half = torch.nn.Parameter(_params([(50,)], torch.float16, 9)[0].detach())
    ref_strided = torch.nn.Parameter(strided.detach().clone())
    ref_half = torch.nn.Parameter(half.detach().clone())
    opt, ref = _triton([strided, half], lr=1e-2), _eager([ref_strided, ref_half], lr=1e-2)
    for gs in _grads([(40, 30), (50,)], torch.float32, seed=9, steps=2):
        gs = [gs[0], gs[1].half()]
        _step(opt, [strided, half], gs, 1e-2)
        _step(ref, [ref_strided, ref_half], gs, 1e-2)
    assert _kernel_tensors(opt) == 0
    assert torch.equal(strided, ref_strided) and torch.equal(half, ref_half)


# ------------------------------------------------------------------- registry and the driver


def test_registry_entry_needs_cuda_and_triton():
    """`optim.impl=lionbench_triton` is registered, refused on the CPU (one line, naming what
    it needs), and builds a TritonLion over the harness's groups."""
    from omegaconf import OmegaConf

    from lionbench.errors import UserError
    from lionbench.optim import build_from_groups, check_impl
    from lionbench.optim.registry import OPTIMIZERS

    impls = OPTIMIZERS["lion"].impls
    assert next(iter(impls)) == "lionbench"  # not the default until measured on a GPU
    for name, moved in (("lionbench_triton", 20), ("lionbench_triton_bf16", 16)):
        assert impls[name].needs == ("cuda", "triton") and impls[name].bytes_moved == moved
        with pytest.raises(UserError, match="needs a CUDA device"):
            check_impl(OmegaConf.create({"name": "lion", "impl": name}), "cpu")
    p = torch.nn.Parameter(torch.zeros(3))
    cfg = {"name": "lion", "impl": "lionbench_triton_bf16", "lr": 1e-3, "betas": (0.9, 0.99)}
    opt = build_from_groups({**cfg, "weight_decay": 0.0}, [{"params": [p]}])
    assert type(opt).__name__ == "TritonLion" and opt.momentum_dtype == torch.bfloat16


@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter's run")
def test_under_the_interpreter():
    """This file's kernel tests with TRITON_INTERPRET=1, in a fresh process (Triton reads it
    when the kernel is defined, at import)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent.parent,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    counts = dict((k, int(n)) for n, k in re.findall(r"(\d+) (passed|skipped|failed)", res.stdout))
    assert counts.get("passed", 0) >= 11 and counts.get("skipped") == 1, res.stdout[-2000:]
