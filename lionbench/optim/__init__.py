"""Optimizer factory: `optim=lion` and `optim=adamw`, each with selectable implementations.

Both optimizers get the same two parameter groups: weight decay on >=2-D weights (matrices,
embeddings, convolutions) and none on biases and norm gains, as nanoGPT and the Lion paper do.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from lionbench.config import OPTIMIZER_IMPLS
from lionbench.errors import UserError

if TYPE_CHECKING:
    import torch


def check_impl(optim_cfg: Any, device: torch.device) -> None:
    """Implementations that need hardware or packages this machine lacks are bad input."""
    triton_ok = device.type == "cuda" and importlib.util.find_spec("triton") is not None
    if optim_cfg.name == "lion" and optim_cfg.impl == "lion_pytorch_triton" and not triton_ok:
        raise UserError(
            "optim.impl=lion_pytorch_triton needs a CUDA device and Triton "
            "(accepted here: "
            + ", ".join(i for i in OPTIMIZER_IMPLS["lion"] if i != "lion_pytorch_triton")
            + ")"
        )


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # An empty group would crash lion-pytorch's foreach step (torch._foreach_* on no tensors).
    return [g for g in groups if g["params"]]


def build_optimizer(optim_cfg: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, float(optim_cfg.weight_decay))
    lr = float(optim_cfg.lr)
    betas = (float(optim_cfg.betas[0]), float(optim_cfg.betas[1]))
    if optim_cfg.name == "lion":
        return build_lion(optim_cfg.impl, groups, lr, betas)
    if optim_cfg.name == "adamw":
        return build_adamw(optim_cfg.impl, groups, lr, betas, float(optim_cfg.eps))
    raise UserError(f"unknown optim '{optim_cfg.name}' (accepted: lion, adamw)")


def build_lion(
    impl: str, groups: list[dict[str, Any]], lr: float, betas: tuple[float, float]
) -> torch.optim.Optimizer:
    """lionbench's own Lion (`lionbench*`: lionbench/optim/lion.py) or lion-pytorch's, whose
    `decoupled_weight_decay` stays False: with it, wd is divided by the initial lr, which is not
    the published rule. `lionbench` and `lionbench_bf16` use the C kernel for fp32 CPU tensors;
    `lionbench_compiled` only the torch.compile path, `lionbench_eager` neither."""
    if impl in ("lionbench", "lionbench_bf16", "lionbench_compiled", "lionbench_eager"):
        import torch

        from lionbench.optim.lion import Lion

        return Lion(
            groups,
            lr=lr,
            betas=betas,
            momentum_dtype=torch.bfloat16 if impl == "lionbench_bf16" else None,
            compiled=impl != "lionbench_eager",
            native=impl in ("lionbench", "lionbench_bf16"),
        )
    if impl == "lion_pytorch":
        from lion_pytorch import Lion

        return Lion(groups, lr=lr, betas=betas)
    if impl == "lion_pytorch_foreach":
        from lion_pytorch.foreach import Lion as ForeachLion

        return ForeachLion(groups, lr=lr, betas=betas)
    if impl == "lion_pytorch_triton":
        from lion_pytorch import Lion

        return Lion(groups, lr=lr, betas=betas, use_triton=True)
    raise UserError(
        f"unknown optim.impl '{impl}' for lion (accepted: {', '.join(OPTIMIZER_IMPLS['lion'])})"
    )


def build_adamw(
    impl: str, groups: list[dict[str, Any]], lr: float, betas: tuple[float, float], eps: float
) -> torch.optim.Optimizer:
    import torch

    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    if impl not in flags:
        raise UserError(f"unknown optim.impl '{impl}' for adamw (accepted: {', '.join(flags)})")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **flags[impl])


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in optimizer state tensors (momentum, second moment, step counters)."""
    import torch

    return sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor)
    )
