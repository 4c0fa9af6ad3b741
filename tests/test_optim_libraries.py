"""Optimizer libraries by name (`optim=timm optim.opt=adopt`, pytorch_optimizer, heavyball:
lionbench/optim/libraries.py) and DeepSpeed's Lion (`optim.impl=deepspeed_cpu`, `deepspeed_fused`:
lionbench/optim/deepspeed_lion.py) against the published rule."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import numpy as np
import pytest
import torch
from helpers import SMOKE, cli_inprocess, run_cli, run_dirs, run_inprocess, summary
from test_optim import (
    LION_GROUP_CFG,
    NO_GRAD,
    STEPS,
    ZERO_GRAD,
    LionReference,
    lr_at,
    make_problem,
    run_problem,
)

from lionbench.errors import UserError
from lionbench.optim import build_from_groups, check_impl, deepspeed_lion, libraries, state_bytes
from lionbench.optim.registry import OPTIMIZERS, missing_needs, spec_of


def needs(library: str):
    """Skip where the library is not installed (CI installs it with `.[dev]`)."""
    return pytest.mark.skipif(
        importlib.util.find_spec(library) is None,
        reason=f"{library} is not installed (pip install 'lionbench[optimizers]')",
    )


# ------------------------------------------------------------------ the libraries, by name


@pytest.mark.parametrize(
    "library,opt,cls",
    [
        pytest.param("timm", "adopt", "timm.optim.adopt.Adopt", marks=needs("timm")),
        pytest.param(
            "pytorch_optimizer",
            "soap",
            "pytorch_optimizer.optimizer.soap.SOAP",
            marks=needs("pytorch_optimizer"),
        ),
        pytest.param("heavyball", "adopt", "heavyball.ADOPT", marks=needs("heavyball")),
    ],
)
def test_a_library_optimizer_by_name_runs_and_its_state_is_measured(
    tmp_path, monkeypatch, library, opt, cls
):
    if library == "heavyball":  # its steps compile with torch.compile: minutes on 2 CPU cores
        import heavyball.utils

        monkeypatch.setattr(heavyball.utils, "compile_mode", None)
    assert run_inprocess(tmp_path, f"optim={library}", f"optim.opt={opt}", "train.steps=6") == 0
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    assert s["status"] == "completed" and s["optim"] == library and s["impl"] == "library"
    assert s["optim_target"] == cls and s["hyperparams"] == {"opt": opt}
    assert math.isfinite(s["final_val_loss"])
    # measured, not modelled: the registry has no model of a library optimizer's state
    assert s["optimizer_state_bytes"] > 0 and s["expected_state_bytes"] is None
    assert s["lr"] == pytest.approx(3e-3)  # the recipe's AdamW baseline (gpt2 at smoke scale)


@needs("timm")
def test_keywords_pass_through_and_lionbench_groups_are_the_librarys():
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    groups = [
        {"params": params[:1], "weight_decay": 0.2},
        {"params": params[1:], "weight_decay": 0},
    ]
    cfg = {"name": "timm", "impl": "library", "opt": "adopt", "lr": 0.01, "weight_decay": 0.2,
           "betas": [0.8, 0.95], "decoupled": True}  # fmt: skip
    opt = build_from_groups(cfg, groups)
    assert type(opt).__name__ == "Adopt"
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0]  # no decay on vectors
    assert all(g["betas"] == (0.8, 0.95) and g["lr"] == 0.01 for g in opt.param_groups)
    assert all(g["decoupled"] for g in opt.param_groups)
    spec = spec_of(cfg)
    assert spec.target == "timm.optim.adopt.Adopt" and spec.impl("library").state_bytes((4, 3)) == 0


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@needs("timm")
def test_a_misspelt_name_is_one_line_with_close_names_and_nothing_written(tmp_path, capsys):
    results = tmp_path / "results"
    code = cli_inprocess("run", *SMOKE, f"results_dir={results}", "optim=timm", "optim.opt=adoptt")
    line = _one_error_line(capsys)
    assert code == 2 and not results.exists()
    assert "unknown optim.opt 'adoptt' for optim=timm; did you mean 'adopt'" in line
    assert "timm.optim.list_optimizers()" in line


@needs("timm")
def test_a_misspelt_keyword_is_one_line_naming_the_signatures_keywords(tmp_path, capsys):
    results = tmp_path / "results"
    code = cli_inprocess(
        "run", *SMOKE, f"results_dir={results}", "optim=timm", "optim.opt=adopt",
        "+optim.betass=[0.9,0.99]",
    )  # fmt: skip
    line = _one_error_line(capsys)
    assert code == 2 and not results.exists()
    assert "optim.betass is not a keyword of timm's adopt (timm.optim.adopt.Adopt)" in line
    assert "did you mean 'optim.betas'?" in line and "its keywords: lr, betas, eps," in line


@needs("timm")
@needs("pytorch_optimizer")
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optim=timm"], "missing value for optim.opt"),
        (["optim=timm", "optim.opt=adopt", "+optim.betas=[0.9,1.5]"],
         "timm's adopt (timm.optim.adopt.Adopt) refused these settings: ValueError: Invalid beta"),
        (["optim=pytorch_optimizer", "optim.opt=fromage"],
         "takes no weight decay (set optim.weight_decay=0)"),
        (["optim=pytorch_optimizer", "optim.opt=alig"], "takes no lr"),
        (["optim=timm", "optim.opt=adopt", "optim.impl=fused"],
         "unknown optim.impl (for optim=timm) 'fused'"),
        (["optim=adamw", "+optim.betass=1"], "a key no config of lionbench reads"),
    ],
)  # fmt: skip
def test_bad_library_settings_are_one_line(tmp_path, capsys, overrides, message):
    results = tmp_path / "results"
    assert cli_inprocess("run", *SMOKE, f"results_dir={results}", *overrides) == 2
    assert message in _one_error_line(capsys)
    assert not results.exists()


@needs("pytorch_optimizer")
def test_a_library_without_weight_decay_runs_with_none():
    p = torch.nn.Parameter(torch.randn(3, 3))
    cfg = {"name": "pytorch_optimizer", "opt": "fromage", "lr": 0.01, "weight_decay": 0.0}
    spec = spec_of(cfg)
    spec.hyperparams["opt"]("fromage", "optim.opt")  # accepted: weight decay 0
    build_from_groups(cfg, [{"params": [p], "weight_decay": 0.0}])


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch):
    lib = libraries.LIBRARIES["timm"]
    monkeypatch.setitem(libraries.LIBRARIES, "timm", dataclasses.replace(lib, module="no_such_lib"))
    libraries._resolve.cache_clear()
    try:
        with pytest.raises(UserError, match=r'optim=timm needs timm \(pip install "lionbench\['):
            spec_of({"name": "timm", "opt": "adopt"})
        missing = missing_needs(OPTIMIZERS["timm"].impls["library"], "cpu")
        assert missing == ['timm (pip install "lionbench[optimizers]")']
    finally:
        libraries._resolve.cache_clear()


def test_list_shows_the_libraries_and_where_their_names_are():
    res = run_cli("list")
    assert res.returncode == 0
    for word in ("timm", "pytorch_optimizer", "heavyball", "optim.opt=NAME",
                 "timm.optim.list_optimizers()", "deepspeed_cpu"):  # fmt: skip
        assert word in res.stdout, word


def test_measured_state_counts_nested_state_once():
    """heavyball keeps {0: {...}} per parameter and preconditioners in lists; a view of a
    buffer already counted adds nothing."""
    buf = torch.zeros(10)

    class Fake:
        def __init__(self) -> None:
            nested = {"m": buf, "v": buf[:5], "q": [torch.zeros(3), (torch.zeros(2),)]}
            self.state = {"p": {0: nested, "step": 3, "seen": {1, 2}}}

    assert state_bytes(Fake()) == 4 * (10 + 3 + 2)


# ------------------------------------------------------------------------ DeepSpeed's Lion


def _deepspeed_missing(impl: str, device: str) -> str | None:
    missing = missing_needs(OPTIMIZERS["lion"].impls[impl], device)
    return " and ".join(missing) or None


def _sign_zero_variant(gi: int, pi: int, init, sign_zero: float) -> np.ndarray:
    """Where c is exactly 0 (a parameter whose gradient is always 0): DeepSpeed's step."""
    p = init[gi][pi].copy()
    for s in range(STEPS):
        lr = lr_at(s, LION_GROUP_CFG[gi]["lr"])
        p = p * (1 - lr * 0.7) - lr * sign_zero
    return p


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.95, 0.8)], ids=["default", "other"])
@pytest.mark.parametrize(
    "impl,device,sign_zero",
    [
        pytest.param("deepspeed_cpu", "cpu", 1.0, id="deepspeed_cpu"),
        pytest.param("deepspeed_fused", "cuda", -1.0, id="deepspeed_fused", marks=pytest.mark.gpu),
    ],
)
def test_deepspeed_lion_is_the_published_rule_but_at_c_zero(impl, device, sign_zero, betas):
    """In fp32 against the float64 reference (test_optim.py's problem: two groups, their own lr
    and wd, an irregular lr, an all-zero step, a parameter without gradients); the one
    difference is documented: where c = 0 DeepSpeed steps by lr (sign(0) = +1 on the CPU,
    -1 in CUDA) where the published rule only decays."""
    device_type = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    if (reason := _deepspeed_missing(impl, device_type)) is not None:
        pytest.skip(f"{impl} needs {reason}")
    params, init, grads = make_problem(seed=1, dtype=torch.float32, device=device)
    groups = [
        {"params": params[0], "weight_decay": LION_GROUP_CFG[0]["weight_decay"]},
        {"params": params[1], **LION_GROUP_CFG[1]},
    ]
    cfg = {"name": "lion", "impl": impl, "lr": LION_GROUP_CFG[0]["lr"], "betas": betas}
    opt = build_from_groups(cfg, groups)
    assert [g["lr"] for g in opt.param_groups] == [0.03, 0.011]
    ref = LionReference(*betas)
    ref_p = run_problem(opt, ref, params, init, grads, LION_GROUP_CFG)
    shapes = []
    for gi, group in enumerate(params):
        for pi, p in enumerate(group):
            got = p.detach().cpu().double().numpy()
            if (gi, pi) == NO_GRAD:
                assert np.array_equal(got, init[gi][pi].astype(np.float32))
                assert not opt.state.get(p), "no state without a gradient"
                continue
            shapes.append(tuple(p.shape))
            assert sorted(opt.state[p]) == ["exp_avg", "step"]  # no unused exp_avg_sq
            if (gi, pi) == ZERO_GRAD:
                want = _sign_zero_variant(gi, pi, init, sign_zero)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
                assert not np.allclose(got, ref_p[gi][pi], atol=1e-2)  # not the published rule
                continue
            np.testing.assert_allclose(got, ref_p[gi][pi], rtol=2e-6, atol=2e-6)
            m = opt.state[p]["exp_avg"].cpu().double().numpy()
            np.testing.assert_allclose(m, ref.m[(gi, pi)], rtol=1e-6, atol=1e-6)
    assert state_bytes(opt) == OPTIMIZERS["lion"].expected_state_bytes(impl, shapes)


def test_deepspeed_cpu_lion_is_refused_for_cuda_parameters():
    with pytest.raises(UserError, match=r"needs parameters on the CPU \(device=cpu"):
        check_impl({"name": "lion", "impl": "deepspeed_cpu"}, "cuda")
    with pytest.raises(UserError, match="needs a CUDA device"):
        check_impl({"name": "lion", "impl": "deepspeed_fused"}, "cpu")


def test_deepspeed_missing_or_unbuildable_is_left_out_of_bench_in_one_line(monkeypatch, capsys):
    from lionbench.commands import bench_optim as bench

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a)
    )
    with pytest.raises(UserError, match=r'needs DeepSpeed \(pip install "lionbench\[optimizers\]"'):
        check_impl({"name": "lion", "impl": "deepspeed_cpu"}, "cpu")
    assert "lion:deepspeed_cpu" not in bench.default_impls("cpu")

    def no_compiler(need):
        raise RuntimeError("Error building extension 'cpu_lion'")

    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "deepspeed"
                        else real(n, *a))  # fmt: skip
    monkeypatch.setattr(deepspeed_lion, "load", no_compiler)
    deepspeed_lion.op_problem.cache_clear()
    try:
        capsys.readouterr()
        assert "lion:deepspeed_cpu" not in bench.default_impls("cpu")
        warned = capsys.readouterr().err.strip().splitlines()
        assert len(warned) == 1 and "DeepSpeed's Lion (cpu_lion) left out" in warned[0]
        with pytest.raises(UserError, match="cpu_lion op, which did not build here"):
            check_impl({"name": "lion", "impl": "deepspeed_cpu"}, "cpu")
    finally:
        deepspeed_lion.op_problem.cache_clear()
