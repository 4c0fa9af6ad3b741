"""Muon (Jordan et al. 2024) for torch older than 2.9, which ships `torch.optim.Muon`.

The same rule as torch's, step for step (docs/references.md): momentum by lerp, Nesterov's
look-ahead, five quintic Newton-Schulz iterations in bf16 on the (transposed if tall) update
normalised by its Frobenius norm, decoupled weight decay `p *= 1 - lr * wd`, and the update
scaled by `adjust_lr_fn` ("original": sqrt(max(1, rows / cols)); "match_rms_adamw": 0.2 *
sqrt(max(rows, cols)), Moonlight's, under which AdamW's lr and wd carry over). On torch >= 2.9
`optim.impl=torch` is the default; tests check that both agree.
"""

from __future__ import annotations

import math
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


def orthogonalize(update: torch.Tensor, steps: int, eps: float) -> torch.Tensor:
    """U S' V^T with S' near 1 for the update U S V^T: Newton-Schulz in bf16, as torch's."""
    a, b, c = NS_COEFFICIENTS
    x = update.bfloat16()
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


def lr_scale(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    rows, cols = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    raise ValueError(f"unknown adjust_lr_fn {adjust_lr_fn!r}")


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters only (what the composite `optim=muon` gives it)."""

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, eps: float = 1e-7,
                 adjust_lr_fn: str | None = None) -> None:  # fmt: skip
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "nesterov": nesterov, "ns_steps": ns_steps, "eps": eps,
                    "adjust_lr_fn": adjust_lr_fn}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, mu = float(group["lr"]), group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_steps"], group["eps"])
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * lr_scale(group["adjust_lr_fn"], p.shape))
        return loss
