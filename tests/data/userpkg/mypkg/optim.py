"""A user optimizer: plain SGD written from scratch, brought in with `_target_`."""

from __future__ import annotations

import torch


class PlainSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.01, weight_decay: float = 0.0, dampening: float = 1.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "dampening": dampening})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(p.grad, alpha=-group["lr"] * group["dampening"])
