"""Exponential moving average of the weights (DDPM-style), kept on the device."""

from __future__ import annotations

import copy

import torch


class EMA:
    """Updated after each optimizer step with one foreach lerp; evaluated separately from the
    raw weights (as `ema_<metric>`), and the weights that sample at the end of a run."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src = [p.detach() for p in model.parameters()]  # views of the live weights
        self._dst = list(self.model.parameters())
        self._source_model = model

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay)

    @torch.no_grad()
    def synced(self) -> torch.nn.Module:
        """The averaged model, with buffers (e.g. BatchNorm statistics) copied from the source."""
        for dst, src in zip(self.model.buffers(), self._source_model.buffers(), strict=True):
            dst.copy_(src)
        return self.model
