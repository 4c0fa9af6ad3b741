"""Optimizers against independent float64 references of the published rules.

Lion (docs/references.md, google/automl `lion`):
    c = beta1 * m + (1 - beta1) * g
    p = p * (1 - lr * wd) - lr * sign(c)
    m = beta2 * m + (1 - beta2) * g
AdamW (Loshchilov & Hutter, torch's decoupled form):
    p = p * (1 - lr * wd); m, v moments; p -= lr * mhat / (sqrt(vhat) + eps)
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from helpers import build_adamw, build_lion
from omegaconf import OmegaConf

from lionbench.errors import UserError
from lionbench.optim import (
    build_from_groups,
    build_optimizer,
    check_impl,
    param_groups,
    state_bytes,
)
from lionbench.optim.registry import OPTIMIZERS
from lionbench.recipes.gpt2 import GPT

# ---------------------------------------------------------------------------------------------
# Independent references (numpy, float64)
# ---------------------------------------------------------------------------------------------


class LionReference:
    def __init__(self, beta1: float, beta2: float) -> None:
        self.beta1, self.beta2 = beta1, beta2
        self.m: dict[object, np.ndarray] = {}

    def step(self, key: object, p: np.ndarray, g: np.ndarray, lr: float, wd: float) -> np.ndarray:
        m = self.m.setdefault(key, np.zeros_like(p))
        c = self.beta1 * m + (1.0 - self.beta1) * g
        p = p * (1.0 - lr * wd) - lr * np.sign(c)  # np.sign(0) == 0
        self.m[key] = self.beta2 * m + (1.0 - self.beta2) * g
        return p


class AdamWReference:
    def __init__(self, beta1: float, beta2: float, eps: float) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.state: dict[object, tuple[np.ndarray, np.ndarray, int]] = {}

    def step(self, key: object, p: np.ndarray, g: np.ndarray, lr: float, wd: float) -> np.ndarray:
        m, v, t = self.state.get(key, (np.zeros_like(p), np.zeros_like(p), 0))
        t += 1
        p = p * (1.0 - lr * wd)
        m = self.beta1 * m + (1.0 - self.beta1) * g
        v = self.beta2 * v + (1.0 - self.beta2) * g * g
        mhat = m / (1.0 - self.beta1**t)
        vhat = v / (1.0 - self.beta2**t)
        p = p - lr * mhat / (np.sqrt(vhat) + self.eps)
        self.state[key] = (m, v, t)
        return p


# ---------------------------------------------------------------------------------------------
# A scripted optimisation problem shared by the Lion and AdamW comparisons
# ---------------------------------------------------------------------------------------------

STEPS = 25
ZERO_STEP = 10  # every gradient is exactly zero at this step (but not None)
# Group 0: >=2-D weights (decayed); group 1: vectors with their own lr and weight decay.
SHAPES = [[(5, 7), (2, 3, 4), (4, 4), (3, 3)], [(6,), (9,)]]
ZERO_GRAD = (0, 2)  # this parameter's gradient is exactly zero from the start
NO_GRAD = (0, 3)  # this parameter never gets a gradient (grad None)


def make_problem(seed: int, dtype=torch.float64, device="cpu"):
    """Parameters (torch), their float64 numpy copies, and a list of per-step gradients."""
    rng = np.random.default_rng(seed)
    init = [[rng.standard_normal(s) for s in shapes] for shapes in SHAPES]
    grads = []
    for step in range(STEPS):
        per_step = []
        for gi, shapes in enumerate(SHAPES):
            row = []
            for pi, s in enumerate(shapes):
                if (gi, pi) == NO_GRAD:
                    row.append(None)
                elif (gi, pi) == ZERO_GRAD or step == ZERO_STEP:
                    row.append(np.zeros(s))
                else:
                    # mixed scales so that eps matters for AdamW on some entries
                    scale = 10.0 ** rng.integers(-4, 1, size=s)
                    row.append(rng.standard_normal(s) * scale)
            per_step.append(row)
        grads.append(per_step)
    params = [
        [torch.nn.Parameter(torch.tensor(a, dtype=dtype, device=device)) for a in group]
        for group in init
    ]
    return params, init, grads


def lr_at(step: int, base: float) -> float:
    """An irregular lr sequence, set into param_groups between steps as a scheduler does."""
    return base * (0.2 + 0.8 * abs(np.cos(0.7 * step)))


def run_problem(opt, ref, params, init, grads, group_cfg):
    """Step `opt` and `ref` in lockstep; return the final numpy reference values."""
    ref_p = [[a.copy() for a in group] for group in init]
    for step in range(STEPS):
        for gi, group in enumerate(opt.param_groups):
            lr = lr_at(step, group_cfg[gi]["lr"])
            group["lr"] = lr
            for pi, p in enumerate(params[gi]):
                g = grads[step][gi][pi]
                if g is None:
                    p.grad = None
                    continue
                p.grad = torch.tensor(g, dtype=p.dtype, device=p.device)
                ref_p[gi][pi] = ref.step(
                    (gi, pi), ref_p[gi][pi], g, lr, group_cfg[gi]["weight_decay"]
                )
        opt.step()
    return ref_p


# ---------------------------------------------------------------------------------------------
# Lion
# ---------------------------------------------------------------------------------------------

LION_GROUP_CFG = [{"lr": 0.03, "weight_decay": 0.7}, {"lr": 0.011, "weight_decay": 0.2}]


def _triton_usable() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


LION_IMPLS = [
    pytest.param("lionbench", id="lionbench"),
    pytest.param("lionbench_compiled", id="lionbench_compiled"),
    pytest.param("lionbench_eager", id="lionbench_eager"),
    pytest.param("lion_pytorch", id="lion_pytorch"),
    pytest.param("lion_pytorch_foreach", id="lion_pytorch_foreach"),
    pytest.param(
        "lion_pytorch_triton",
        id="lion_pytorch_triton",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                not _triton_usable(), reason="lion_pytorch_triton needs a CUDA device and Triton"
            ),
        ],
    ),
]


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.95, 0.8)], ids=["default", "other"])
@pytest.mark.parametrize("impl", LION_IMPLS)
def test_lion_matches_published_rule(impl, betas):
    device = "cuda" if impl == "lion_pytorch_triton" else "cpu"
    # Triton's kernel receives lr, wd and betas as float32 scalars: float64 tensors still, but
    # agreement only to float32 precision of those scalars.
    tol = 1e-6 if impl == "lion_pytorch_triton" else 1e-12
    params, init, grads = make_problem(seed=1, device=device)
    # group 0 takes the constructor's lr, group 1 sets its own
    groups = [
        {"params": params[0], "weight_decay": LION_GROUP_CFG[0]["weight_decay"]},
        {"params": params[1], **LION_GROUP_CFG[1]},
    ]
    opt = build_lion(impl, groups, LION_GROUP_CFG[0]["lr"], betas)
    assert [g["lr"] for g in opt.param_groups] == [0.03, 0.011]
    ref = LionReference(*betas)
    ref_p = run_problem(opt, ref, params, init, grads, LION_GROUP_CFG)

    for gi, group in enumerate(params):
        for pi, p in enumerate(group):
            got = p.detach().cpu().numpy()
            if (gi, pi) == NO_GRAD:
                assert np.array_equal(got, init[gi][pi]), "a grad-None param must not move"
                assert p not in opt.state or len(opt.state[p]) == 0, "no state without a grad"
                continue
            np.testing.assert_allclose(got, ref_p[gi][pi], rtol=tol, atol=tol)
            m = opt.state[p]["exp_avg"].cpu().numpy()
            np.testing.assert_allclose(m, ref.m[(gi, pi)], rtol=tol, atol=tol)

    # sign(0) = 0: a parameter whose gradient is always zero only decays, by prod(1 - lr_t wd)
    gi, pi = ZERO_GRAD
    decay = np.prod([1 - lr_at(s, LION_GROUP_CFG[gi]["lr"]) * 0.7 for s in range(STEPS)])
    np.testing.assert_allclose(
        params[gi][pi].detach().cpu().numpy(), init[gi][pi] * decay, rtol=tol, atol=tol
    )
    assert decay < 0.9  # the decay is large enough to be seen
    assert not opt.state[params[gi][pi]]["exp_avg"].any()


def test_lion_reference_is_not_a_variant():
    """The reference itself distinguishes the published rule from common wrong variants."""
    p = np.array([1.0, -2.0, 0.5])
    m = np.array([0.3, -0.01, 0.0])
    g = np.array([-1.0, 0.5, 0.0])
    ref = LionReference(0.9, 0.99)
    ref.m[0] = m.copy()
    out = ref.step(0, p, g, lr=0.1, wd=0.5)
    # c = 0.9 m + 0.1 g = [0.17, 0.041, 0] -> sign [1, 1, 0]
    np.testing.assert_array_equal(out, p * 0.95 - 0.1 * np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(ref.m[0], 0.99 * m + 0.01 * g, rtol=0, atol=1e-15)
    # one-beta variant (beta2 for the update) would give sign(0.99 m + 0.01 g) = [1, -1, 0]
    assert np.sign(0.99 * m + 0.01 * g)[1] == -1


def test_build_lion_unknown_impl():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(UserError, match="lion"):
        build_lion("nope", [{"params": [p]}], 1e-3, (0.9, 0.99))


def test_check_impl_triton_needs_cuda():
    cfg = OmegaConf.create({"name": "lion", "impl": "lion_pytorch_triton"})
    with pytest.raises(UserError, match="CUDA"):
        check_impl(cfg, "cpu")
    check_impl(OmegaConf.create({"name": "lion", "impl": "lion_pytorch"}), "cpu")


# ---------------------------------------------------------------------------------------------
# AdamW
# ---------------------------------------------------------------------------------------------

ADAMW_GROUP_CFG = [{"lr": 0.02, "weight_decay": 0.3}, {"lr": 0.005, "weight_decay": 0.05}]


@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_adamw_matches_reference(impl):
    # fused AdamW supports float64 on CPU in the torch this project uses, so every impl is
    # compared in float64 with a tight tolerance.
    betas, eps = (0.9, 0.95), 1e-4
    params, init, grads = make_problem(seed=2)
    groups = [
        {"params": params[0], "weight_decay": ADAMW_GROUP_CFG[0]["weight_decay"]},
        {"params": params[1], **ADAMW_GROUP_CFG[1]},
    ]
    opt = build_adamw(impl, groups, ADAMW_GROUP_CFG[0]["lr"], betas, eps)
    flags = {"fused": ("fused", True), "foreach": ("foreach", True), "loop": ("foreach", False)}
    key, value = flags[impl]
    assert opt.defaults[key] is value
    ref = AdamWReference(*betas, eps)
    ref_p = run_problem(opt, ref, params, init, grads, ADAMW_GROUP_CFG)

    for gi, group in enumerate(params):
        for pi, p in enumerate(group):
            got = p.detach().numpy()
            if (gi, pi) == NO_GRAD:
                assert np.array_equal(got, init[gi][pi])
                assert p not in opt.state or len(opt.state[p]) == 0
                continue
            np.testing.assert_allclose(got, ref_p[gi][pi], rtol=1e-10, atol=1e-10)
            m, v, t = ref.state[(gi, pi)]
            np.testing.assert_allclose(opt.state[p]["exp_avg"].numpy(), m, rtol=1e-10, atol=0)
            np.testing.assert_allclose(opt.state[p]["exp_avg_sq"].numpy(), v, rtol=1e-10, atol=0)
            assert float(opt.state[p]["step"]) == t == STEPS


def test_build_adamw_unknown_impl():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(UserError, match="fused, foreach, loop"):
        build_adamw("apex", [{"params": [p]}], 1e-3, (0.9, 0.95), 1e-8)


# ---------------------------------------------------------------------------------------------
# Parameter groups, state size, the factory
# ---------------------------------------------------------------------------------------------


def small_gpt(bias: bool = True) -> GPT:
    torch.manual_seed(0)
    return GPT(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=40, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_param_groups_decay_only_matrices(bias):
    model = small_gpt(bias)
    model.wpe.weight.requires_grad_(False)  # frozen params belong to no group
    groups = param_groups(model, 0.25)
    assert [g["weight_decay"] for g in groups] == [0.25, 0.0]

    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter appears twice"
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert set(ids) == {id(p) for p in trainable}
    # tied embeddings: lm_head.weight is wte.weight, counted once
    assert model.lm_head.weight is model.wte.weight
    assert sum(id(p) == id(model.wte.weight) for g in groups for p in g["params"]) == 1
    assert id(model.wpe.weight) not in ids

    names = {id(p): n for n, p in model.named_parameters()}  # deduplicated like parameters()
    decay = sorted(names[id(p)] for p in groups[0]["params"])
    no_decay = sorted(names[id(p)] for p in groups[1]["params"])
    expected_decay = sorted(
        ["wte.weight"]
        + [
            f"h.{i}.{m}.weight"
            for i in range(2)
            for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        ]
    )
    assert decay == expected_decay
    assert all(p.dim() >= 2 for p in groups[0]["params"])
    assert all(p.dim() < 2 for p in groups[1]["params"])
    for n in no_decay:
        assert n.endswith(".bias") or ".ln_" in n or n.startswith("ln_f."), n
    ln_weights = {"ln_f.weight"} | {f"h.{i}.ln_{j}.weight" for i in range(2) for j in (1, 2)}
    assert ln_weights <= set(no_decay)
    n_bias = sum(n.endswith(".bias") for n in no_decay)
    assert n_bias == (2 * (4 + 2) + 1 if bias else 0)  # 4 linears + 2 LNs per block, ln_f


def _one_step(model: GPT, opt: torch.optim.Optimizer) -> None:
    idx = torch.randint(40, (2, 8), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten()).backward()
    opt.step()


@pytest.mark.parametrize("adamw_impl", ["fused", "foreach", "loop"])
@pytest.mark.parametrize("lion_impl", ["lion_pytorch", "lion_pytorch_foreach"])
def test_state_bytes(lion_impl, adamw_impl):
    lion_model, adam_model = small_gpt(), small_gpt()
    n = sum(p.numel() for p in lion_model.parameters())  # tied weight counted once
    n_tensors = len(list(lion_model.parameters()))
    assert all(p.dtype == torch.float32 for p in lion_model.parameters())

    lion = build_lion(lion_impl, param_groups(lion_model, 0.1), 1e-4, (0.9, 0.99))
    adam = build_adamw(adamw_impl, param_groups(adam_model, 0.1), 1e-3, (0.9, 0.95), 1e-8)
    assert state_bytes(lion) == 0 and state_bytes(adam) == 0
    _one_step(lion_model, lion)
    _one_step(adam_model, adam)
    assert all(p.grad is not None for p in lion_model.parameters())

    assert state_bytes(lion) == 4 * n
    step_bytes = sum(
        s["step"].numel() * s["step"].element_size()
        for s in adam.state.values()
        if isinstance(s["step"], torch.Tensor)
    )
    assert len(adam.state) == n_tensors
    assert step_bytes <= 8 * n_tensors  # a scalar counter per tensor, nothing more
    assert state_bytes(adam) == 8 * n + step_bytes
    assert state_bytes(adam) / state_bytes(lion) == pytest.approx(2.0, rel=0.01)


def test_state_bytes_ignores_non_tensors():
    p = torch.nn.Parameter(torch.zeros(10))
    opt = torch.optim.SGD([p], lr=0.1)
    opt.state[p] = {"a": torch.zeros(3, dtype=torch.float64), "b": 7, "c": "x"}
    assert state_bytes(opt) == 24


def _cfg(**kw):
    return OmegaConf.create(kw)


def test_build_optimizer_lion():
    from lion_pytorch import Lion
    from lion_pytorch.foreach import Lion as ForeachLion

    model = small_gpt()
    # conf/optim/lion.yaml has no eps
    cfg = _cfg(
        name="lion",
        impl="lion_pytorch_foreach",
        ratio=3,
        lr=2e-4,
        weight_decay=0.3,
        betas=[0.95, 0.98],
    )
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, ForeachLion)  # a subclass guards its gradless-group trap
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    assert all(g["lr"] == 2e-4 for g in opt.param_groups)
    assert all(tuple(g["betas"]) == (0.95, 0.98) for g in opt.param_groups)
    assert all(isinstance(b, float) for b in opt.param_groups[0]["betas"])
    assert opt.decoupled_wd is False  # lion-pytorch's variant divides wd by the initial lr
    n_in_groups = sum(len(g["params"]) for g in opt.param_groups)
    assert n_in_groups == len(list(model.parameters()))

    opt = build_optimizer(_cfg(**{**OmegaConf.to_container(cfg), "impl": "lion_pytorch"}), model)
    assert type(opt) is Lion


@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_build_optimizer_adamw(impl):
    model = small_gpt()
    cfg = _cfg(name="adamw", impl=impl, lr=6e-4, weight_decay=0.1, betas=[0.9, 0.95], eps=1e-7)
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)  # fused: a subclass guards its strides trap
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    for g in opt.param_groups:
        assert g["lr"] == 6e-4
        assert tuple(g["betas"]) == (0.9, 0.95)
        assert g["eps"] == 1e-7
    assert opt.defaults["fused"] is (True if impl == "fused" else None)
    assert opt.defaults["foreach"] is {"fused": None, "foreach": True, "loop": False}[impl]


def test_build_optimizer_bad_names():
    model = small_gpt()
    with pytest.raises(UserError, match=f"accepted: {', '.join(OPTIMIZERS)}"):
        build_optimizer(
            _cfg(name="nonesuch", impl="x", lr=0.1, weight_decay=0.0, betas=[0.9, 0.9]), model
        )
    with pytest.raises(UserError, match="impl"):
        build_optimizer(
            _cfg(name="lion", impl="fused", lr=0.1, weight_decay=0.0, betas=[0.9, 0.9]), model
        )


@pytest.mark.parametrize(
    "name, impl",
    [
        ("lion", "lion_pytorch"),
        ("lion", "lion_pytorch_foreach"),
        ("adamw", "fused"),
        ("adamw", "foreach"),
        ("adamw", "loop"),
    ],
)
def test_build_optimizer_model_without_vectors(name, impl):
    """A model whose parameters are all >=2-D (no biases, no norms) leaves the no-decay group
    empty; every optimizer must still step, with the published first-step update."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False)).double()
    w0 = model[0].weight.detach().numpy().copy()
    cfg = _cfg(name=name, impl=impl, lr=0.01, weight_decay=0.5, betas=[0.9, 0.99], eps=1e-8)
    opt = build_optimizer(cfg, model)
    model(torch.randn(5, 4, dtype=torch.float64)).square().sum().backward()
    g = model[0].weight.grad.numpy().copy()
    opt.step()
    if name == "lion":
        expected = w0 * (1 - 0.01 * 0.5) - 0.01 * np.sign(g)
    else:
        expected = w0 * (1 - 0.01 * 0.5) - 0.01 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(model[0].weight.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_vit_tokens_and_position_embedding_are_not_decayed():
    """3-D, but not weights: excluded by name for every optimizer, as biases and norms are."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(16, 8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)
    groups = param_groups(model, 0.3)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert model.class_token.dim() == 3 and model.encoder.pos_embedding.dim() == 3
    assert {"class_token", "encoder.pos_embedding"} <= no_decay
    assert not decay & {"class_token", "encoder.pos_embedding"}
    # the attention's raw in_proj_weight is a weight matrix: still decayed
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in decay
    assert "conv_proj.weight" in decay and "heads.head.weight" in decay


# ------------------------------------------------- upstream traps absorbed (issue 18 item 14)


def test_lion_pytorch_foreach_steps_with_a_group_without_gradients():
    """lion-pytorch's foreach step fails on a group none of whose parameters has a gradient."""
    p1, p2 = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    cfg = {"name": "lion", "impl": "lion_pytorch_foreach", "lr": 0.1, "weight_decay": 0.0}
    cfg["betas"] = [0.9, 0.99]
    opt = build_from_groups(cfg, [{"params": [p1]}, {"params": [p2], "weight_decay": 0.0}])
    p1.grad = torch.ones(4)
    opt.step()
    assert torch.equal(p1.detach(), torch.full((4,), 0.9)) and torch.equal(p2, torch.ones(4))


def test_fused_adamw_on_a_transposed_parameter_matches_the_loop():
    """torch's fused CPU AdamW is wrong when a non-contiguous parameter's gradient has other
    strides; the registry lays the gradient out like the parameter first."""
    base = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    grad = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))  # contiguous
    out = {}
    for impl in ("fused", "loop"):
        p = torch.nn.Parameter(base.clone().t())  # a transposed, non-contiguous parameter
        cfg = {"name": "adamw", "impl": impl, "lr": 0.1, "weight_decay": 0.1, "eps": 1e-8}
        cfg["betas"] = [0.9, 0.999]
        opt = build_from_groups(cfg, [{"params": [p], "weight_decay": 0.1}])
        for _ in range(3):
            p.grad = grad.clone()
            opt.step()
        out[impl] = p.detach()
    torch.testing.assert_close(out["fused"], out["loop"])


@pytest.mark.parametrize("native_kernel", [False, True])
def test_lion_parameters_sharing_memory_are_updated_in_turn(native_kernel):
    """Two Parameters over one storage: every path updates them one after the other, as a loop
    over the parameters does (the multi-tensor path used to decay the memory twice first)."""
    from lionbench.optim import native
    from lionbench.optim.lion import Lion, _foreach_update

    if native_kernel and native.library() is None:
        pytest.skip("no C compiler: the native kernel is not built here")
    gen = torch.Generator().manual_seed(0)
    base, grads = torch.randn(64, generator=gen), [torch.randn(64, generator=gen) for _ in "ab"]
    expected = base.clone()
    moments = [torch.zeros(64), torch.zeros(64)]
    for g, m in zip(grads, moments, strict=True):  # the reference: one parameter at a time
        _foreach_update([expected], [g], [m], 0.1, 0.5, 0.9, 0.99)
    storage = base.clone()
    params = [torch.nn.Parameter(storage), torch.nn.Parameter(storage)]
    opt = Lion([{"params": params, "weight_decay": 0.5}], lr=0.1, compiled=False)
    opt.native = native_kernel
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(storage, expected, rtol=0, atol=1e-6)


def test_compiled_lion_does_not_recompile_as_lr_and_betas_change():
    """torch.compile falls back to eager after 8 recompiles: a schedule's lr (a new Python float
    every step) must reach the compiled update as a tensor, and the sizes and betas as dynamic
    values. Traced with the eager backend (Dynamo's guards, no C++ build: fast)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from lionbench.optim.lion import Lion, _update

    torch._dynamo.reset()
    counters.clear()
    ps = [torch.nn.Parameter(torch.randn(n)) for n in (300, 500, 700)]
    opt = Lion([{"params": ps, "weight_decay": 0.1}], lr=1e-3, native=False, fuse_below=1)
    opt.update = torch.compile(_update, fullgraph=True, dynamic=True, backend="eager")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    for step in range(10):
        for p in ps:
            p.grad = torch.randn_like(p)
        opt.param_groups[0]["betas"] = (0.9, 0.99 - step * 1e-3)
        opt.step()
        sched.step()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    torch._dynamo.reset()
