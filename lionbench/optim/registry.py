"""The one table of optimizers: names, implementations, hyperparameters and state bytes.

Config validation, `build_optimizer`, `bench optim`, `lionbench list`, the run summary, sweeps,
studies and the report all read `OPTIMIZERS`: which optimizers exist, how each is tuned (its
`tuning_axis`), what it holds, and which pair the paper compares (`BASELINE`, `CANDIDATE`). A
first-class optimizer is one `OptimizerSpec` here plus `conf/optim/<name>.yaml` and its baseline
block in each `conf/recipe/<recipe>.yaml`; any other optimizer class comes in through a YAML with
`_target_` (`target_spec`), with no edit to the package, and any optimizer of timm,
pytorch_optimizer or heavyball by name (`optim=timm optim.opt=adopt`: libraries.py). Nothing here
imports torch at module level.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lionbench import checks
from lionbench.errors import UserError
from lionbench.optim import deepspeed_lion, libraries
from lionbench.optim.spec import (  # noqa: F401 (re-exported: the registry's vocabulary)
    LR_MULTIPLIER,
    RATIO,
    Groups,
    Impl,
    OptimizerSpec,
    Partition,
    Shape,
    per_element,
)

# Keys of an optimizer config that are not constructor arguments.
META_KEYS = ("name", "impl", "ratio", "_target_")


def factored(shape: Shape) -> int:
    """Adafactor (torch): a row and a column second-moment vector for >= 2-D tensors, a full one
    otherwise, in fp32, plus a 4-byte step counter."""
    if len(shape) < 2:
        return 4 * math.prod(shape) + 4
    lead = math.prod(shape[:-2])
    return 4 * lead * (shape[-2] + shape[-1]) + 4


# ------------------------------------------------------------------------------------ builders


def _lion(momentum: str | None, compiled: bool, native: bool) -> Callable[..., Any]:
    """lionbench's own Lion (lionbench/optim/lion.py): the C kernel for fp32 CPU tensors when
    `native`, a torch.compile one-pass update elsewhere when `compiled`."""

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        import torch

        from lionbench.optim.lion import Lion

        dtype = getattr(torch, momentum) if momentum else None
        return Lion(
            groups, lr=hp["lr"], betas=tuple(hp["betas"]), momentum_dtype=dtype,
            compiled=compiled, native=native,
        )  # fmt: skip

    return build


def _muon(variant: str) -> Callable[..., Any]:
    """Muon on the `matrix` part (torch's, or lionbench's for torch < 2.9) and AdamW on the
    `rest` with the `adamw_*` settings; weight decay stays off where the groups put it off."""

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        import torch

        from lionbench.optim.muon import Muon
        from lionbench.optim.partition import Partitioned

        parts: dict[str, Groups] = {}
        for g in groups:  # untagged groups (bench optim): 2-D tensors to Muon, by shape alone
            rest = {k: v for k, v in g.items() if k != "part"}
            for part in ("matrix", "rest"):
                params = [p for p in g["params"] if _part_of(g, p) == part]
                if params:
                    parts.setdefault(part, []).append({**rest, "params": params})
        opts: dict[str, Any] = {}
        if "matrix" in parts:
            cls = torch.optim.Muon if variant == "torch" else Muon
            opts["matrix"] = cls(
                parts["matrix"], lr=hp["lr"], weight_decay=hp["weight_decay"],
                momentum=hp["momentum"], nesterov=hp["nesterov"], ns_steps=hp["ns_steps"],
                adjust_lr_fn=hp["adjust_lr_fn"],
            )  # fmt: skip
        if "rest" in parts:
            rest = [{**g, "weight_decay": hp["adamw_weight_decay"] if g["weight_decay"] else 0.0}
                    for g in parts["rest"]]  # fmt: skip
            opts["rest"] = torch.optim.AdamW(
                rest, lr=hp["adamw_lr"], betas=tuple(hp["adamw_betas"]), eps=hp["adamw_eps"]
            )
        return Partitioned(opts, {})

    return build


def _part_of(group: Mapping[str, Any], param: Any) -> str:
    return group.get("part") or ("matrix" if param.dim() == 2 else "rest")


def _matrix_or_adamw(shape: Shape) -> int:
    """Muon's momentum (4 B per element) for a 2-D tensor, AdamW's two moments and step
    otherwise: the composite's state when only shapes are known (bench optim, memory check)."""
    return 4 * math.prod(shape) if len(shape) == 2 else 8 * math.prod(shape) + 4


_MUON_PARTITION = Partition(
    optimizers={"matrix": "muon", "rest": "adamw"},
    state_bytes={"matrix": per_element(4), "rest": per_element(8, 4)},
)


def _lion_pytorch(variant: str) -> Callable[..., Any]:
    """lion-pytorch's Lion; its `decoupled_weight_decay` stays False: with it, wd is divided by
    the initial lr, which is not the published rule."""

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        betas = tuple(hp["betas"])
        if variant == "foreach":
            from lion_pytorch.foreach import Lion as ForeachLion

            return guarded(ForeachLion, skip_gradless_groups)(groups, lr=hp["lr"], betas=betas)
        from lion_pytorch import Lion

        return Lion(groups, lr=hp["lr"], betas=betas, use_triton=variant == "triton")

    return build


def _torch(cls_name: str, flags: Mapping[str, Any], keys: tuple[str, ...]) -> Callable[..., Any]:
    """A torch.optim class with the given implementation flags and hyperparameters."""

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        import torch

        kwargs = {k: tuple(hp[k]) if k == "betas" else hp[k] for k in keys}
        cls = getattr(torch.optim, cls_name)
        if flags.get("fused"):
            cls = guarded(cls, grads_laid_out_like_params)
        return cls(groups, lr=hp["lr"], **kwargs, **flags)

    return build


# ------------------------------------------------------------------- guards for upstream traps


def guarded(cls: type, guard: Callable[[Any], Any]) -> type:
    """`cls` whose step runs under `guard(optimizer)` (a context manager). The closure, if any,
    runs first, so that the guard sees the gradients the step will use."""
    import torch

    class Guarded(cls):  # type: ignore[misc, valid-type]
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            with guard(self):
                super().step()
            return loss

    Guarded.__name__ = Guarded.__qualname__ = cls.__name__
    Guarded.__module__ = cls.__module__
    return Guarded


@contextlib.contextmanager
def skip_gradless_groups(opt: Any) -> Iterator[None]:
    """lion-pytorch's foreach Lion calls torch._foreach_* on a group's gradients, which fails on
    an empty list: a group none of whose parameters has a gradient this step (a frozen or unused
    part of the model, one micro-step) is hidden from its step, as torch's optimizers skip it."""
    groups = opt.param_groups
    opt.param_groups = [g for g in groups if any(p.grad is not None for p in g["params"])]
    try:
        yield
    finally:
        opt.param_groups = groups


@contextlib.contextmanager
def grads_laid_out_like_params(opt: Any) -> Iterator[None]:
    """torch's fused AdamW on the CPU walks a parameter and its gradient as if they had the same
    strides: a non-contiguous parameter (a transposed view) whose gradient is laid out otherwise
    gets a wrong update (errors of 0.15-0.58 seen). Each such gradient is copied into its
    parameter's layout first (a no-op for the usual case, where autograd already matches)."""
    import torch

    for group in opt.param_groups:
        for p in group["params"]:
            g = p.grad
            if g is not None and g.stride() != p.stride():
                p.grad = torch.empty_like(p, memory_format=torch.preserve_format).copy_(g)
    yield


_LION_STATE = per_element(4)
_ADAMW_KEYS = ("betas", "eps")
# Muon's lr conventions (torch's adjust_lr_fn): "original" scales by sqrt(max(1, rows/cols))
# (Jordan's, lr about 0.02); "match_rms_adamw" by 0.2 sqrt(max(rows, cols)), Moonlight's, under
# which AdamW's lr and weight decay carry over (lionbench's default).
MUON_LR_CONVENTIONS = ("match_rms_adamw", "original")
_SGD_KEYS = ("momentum", "nesterov")
_ADAFACTOR_KEYS = ("beta2_decay", "d")

OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            name="lion",
            title="Lion",
            defaults={"lr": 1e-4, "betas": (0.9, 0.99)},
            description="Lion (Chen et al. 2023): sign of an interpolated momentum, one buffer",
            hyperparams={
                "lr": checks.positive,
                "weight_decay": checks.non_negative,
                "betas": checks.betas,
                "ratio": checks.positive,
            },
            ratio_of="adamw",
            impls={
                # the C kernel for fp32 on CPU, torch.compile elsewhere
                "lionbench": Impl(_lion(None, True, True), _LION_STATE, 20),
                "lionbench_bf16": Impl(_lion("bfloat16", True, True), per_element(2), 16),
                "lionbench_compiled": Impl(_lion(None, True, False), _LION_STATE, 20),
                "lionbench_eager": Impl(_lion(None, False, False), _LION_STATE, 20),
                "lionbench_triton": Impl(
                    lambda groups, hp: importlib.import_module("lionbench.optim.lion_triton").build(
                        groups, hp
                    ),
                    _LION_STATE,
                    20,
                    needs=("cuda", "triton"),
                ),
                "lionbench_triton_bf16": Impl(
                    lambda groups, hp: importlib.import_module("lionbench.optim.lion_triton").build(
                        groups, hp, "bfloat16"
                    ),
                    per_element(2),
                    16,
                    needs=("cuda", "triton"),
                ),
                "lion_pytorch_foreach": Impl(_lion_pytorch("foreach"), _LION_STATE, 20),
                "lion_pytorch": Impl(_lion_pytorch("loop"), _LION_STATE, 20),
                "lion_pytorch_triton": Impl(
                    _lion_pytorch("triton"), _LION_STATE, 20, needs=("cuda", "triton")
                ),
                # DeepSpeed's ops (optim/deepspeed_lion.py): sign(0) taken as +-1, see there
                "deepspeed_cpu": Impl(
                    deepspeed_lion.build_cpu, _LION_STATE, 20, (deepspeed_lion.CPU,)
                ),
                "deepspeed_fused": Impl(
                    deepspeed_lion.build_fused, _LION_STATE, 20, ("cuda", deepspeed_lion.FUSED)
                ),
            },
        ),
        OptimizerSpec(
            name="adamw",
            title="AdamW",
            defaults={"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8},
            description="AdamW (Loshchilov & Hutter 2019), the baseline: two buffers",
            hyperparams={
                "lr": checks.positive,
                "weight_decay": checks.non_negative,
                "betas": checks.betas,
                "eps": checks.positive,
            },
            impls={
                impl: Impl(_torch("AdamW", flags, _ADAMW_KEYS), per_element(8, 4), 28)
                for impl, flags in (
                    ("fused", {"fused": True}),
                    ("foreach", {"foreach": True}),
                    ("loop", {"foreach": False}),
                )
            },
        ),
        OptimizerSpec(
            name="muon",
            title="Muon",
            defaults={
                "lr": 1e-3,
                "momentum": 0.95,
                "nesterov": True,
                "ns_steps": 5,
                "adjust_lr_fn": "match_rms_adamw",
                "exclude": [],
                "adamw_lr": 1e-3,
                "adamw_betas": (0.9, 0.95),
                "adamw_eps": 1e-8,
                "adamw_weight_decay": 0.1,
            },
            description="Muon (Jordan et al. 2024) on hidden 2-D weights, AdamW on the rest",
            hyperparams={
                "lr": checks.positive,
                "weight_decay": checks.non_negative,
                "momentum": checks.unit_interval,
                "nesterov": checks.boolean,
                "ns_steps": lambda v, name: checks.integer(v, name, low=1, high=99),
                "adjust_lr_fn": lambda v, name: checks.choice(v, name, MUON_LR_CONVENTIONS),
                "exclude": checks.names,
                "adamw_lr": checks.positive,
                "adamw_betas": checks.betas,
                "adamw_eps": checks.positive,
                "adamw_weight_decay": checks.non_negative,
            },
            impls={
                "torch": Impl(
                    _muon("torch"),
                    _matrix_or_adamw,
                    needs=("torch>=2.9",),
                    partition=_MUON_PARTITION,
                ),
                "lionbench": Impl(_muon("lionbench"), _matrix_or_adamw, partition=_MUON_PARTITION),
            },
            also_reads=("adamw",),
        ),
        OptimizerSpec(
            name="sgd",
            title="SGD",
            defaults={"lr": 1e-2, "momentum": 0.9, "nesterov": True},
            description="SGD with Nesterov momentum (coupled L2 weight decay, torch's rule)",
            hyperparams={
                "lr": checks.positive,
                "weight_decay": checks.non_negative,
                "momentum": checks.unit_interval,
                "nesterov": checks.boolean,
            },
            impls={
                impl: Impl(_torch("SGD", flags, _SGD_KEYS), per_element(4), 20)
                for impl, flags in (("foreach", {"foreach": True}), ("loop", {"foreach": False}))
            },
        ),
        OptimizerSpec(
            name="adafactor",
            title="Adafactor",
            defaults={"lr": 1e-2, "beta2_decay": -0.8, "d": 1.0},
            description="Adafactor (Shazeer & Stern 2018; torch's): factored second moment",
            hyperparams={
                "lr": checks.positive,
                "weight_decay": checks.non_negative,
                "beta2_decay": checks.non_positive,
                "d": lambda v, name: checks.real(v, name, low=1.0),  # torch requires d >= 1
            },
            impls={
                impl: Impl(_torch("Adafactor", flags, _ADAFACTOR_KEYS), factored, 12)
                for impl, flags in (("foreach", {"foreach": True}), ("loop", {"foreach": False}))
            },
        ),
        *libraries.registry_specs(),  # timm, pytorch_optimizer, heavyball: optim.opt=NAME
    )
}


# The pair the paper compares: every candidate against the baseline (the report's default
# `--baseline`, a sweep's reference grid), and the optimizer the paper's claims are about.
BASELINE = "adamw"
CANDIDATE = "lion"


# ------------------------------------------------------------------------ user `_target_` classes


def target_spec(optim_cfg: Mapping[str, Any]) -> OptimizerSpec:
    """The spec of an optimizer given as `_target_: module.Class` in a user's YAML: every key
    but name/impl/_target_ is a constructor argument; lr and weight_decay are required (the
    harness puts weight decay in the parameter groups, 0 on biases and norms)."""
    path = optim_cfg.get("_target_")
    if not isinstance(path, str) or "." not in path:
        raise UserError(f"optim._target_ must be 'module.Class', got {path!r}")
    cls = import_target(path)
    name = optim_cfg.get("name") or cls.__name__.lower()
    extra = [k for k in optim_cfg if k not in META_KEYS and k not in ("lr", "weight_decay")]

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        return cls(groups, lr=hp["lr"], **{k: hp[k] for k in extra})

    return OptimizerSpec(
        name=str(name),
        title=cls.__name__,
        description=f"user optimizer {path}",
        hyperparams={"lr": checks.positive, "weight_decay": checks.non_negative},
        impls={"target": Impl(build, lambda shape: 0)},
        target=path,
    )


def import_target(path: str) -> Any:
    """`module.Class` -> the class, or one line naming what could not be imported."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(
            f"optim._target_ {path}: cannot import module '{module_name}' ({e}); is it on "
            f"PYTHONPATH?"
        ) from None
    if not hasattr(module, attr):
        raise UserError(f"optim._target_ {path}: module '{module_name}' has no '{attr}'")
    return getattr(module, attr)


def spec_of(optim_cfg: Mapping[str, Any]) -> OptimizerSpec:
    """The spec of a composed `optim` config: a registered name (a library's optimizer by
    `optim.opt`), or a user `_target_`."""
    if optim_cfg.get("_target_") is not None:
        return target_spec(optim_cfg)
    name = optim_cfg.get("name")
    checks.choice(name, "optim", OPTIMIZERS)
    if name in libraries.LIBRARIES:  # a library's optimizer by name (optim.opt)
        return libraries.library_spec(optim_cfg)
    return OPTIMIZERS[str(name)]


def impl_of(optim_cfg: Mapping[str, Any]) -> str:
    """The implementation a config selects: `target` for user classes, the registry's default
    (its first) when the config names none."""
    if optim_cfg.get("_target_") is not None:
        return "target"
    impl = optim_cfg.get("impl")
    spec = OPTIMIZERS.get(str(optim_cfg.get("name")))
    if impl is None and spec is not None:
        return next(iter(spec.impls))
    return str(impl)


def hyperparams_of(optim_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's settings other than lr and weight decay (betas, eps, momentum, ...), as
    recorded in the run summary and compared by the report."""
    return {
        k: (list(v) if isinstance(v, list | tuple) else v)
        for k, v in optim_cfg.items()
        if k not in META_KEYS and k not in ("lr", "weight_decay")
    }


def all_impls() -> list[str]:
    """`optim:impl` for every registered implementation, as `bench optim --impls` takes them."""
    return [f"{name}:{impl}" for name, spec in OPTIMIZERS.items() for impl in spec.impls]


def missing_needs(impl: Impl, device_type: str) -> list[str]:
    """What an implementation needs that this machine lacks."""
    import importlib.util

    missing = []
    if "cuda" in impl.needs and device_type != "cuda":
        missing.append("a CUDA device")
    if "triton" in impl.needs and importlib.util.find_spec("triton") is None:
        missing.append("Triton")
    if "torch>=2.9" in impl.needs and not _torch_has("Muon"):
        missing.append("torch >= 2.9 (torch.optim.Muon)")
    return [
        *missing,
        *libraries.missing(impl.needs),
        *deepspeed_lion.missing(impl.needs, device_type),
    ]


def _torch_has(name: str) -> bool:
    import torch

    return hasattr(torch.optim, name)
