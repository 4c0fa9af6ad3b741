"""Evaluation over the fixed eval batches, and steps/time to a target value of a metric."""

from __future__ import annotations

import math
from typing import Any

import torch

from lionbench.recipe import Recipe


@torch.no_grad()
def evaluate(model: torch.nn.Module, recipe: Recipe, batches: Any, autocast: Any) -> dict:
    """Mean loss and metrics over the fixed eval batches; one host sync per metric at the end.

    Each batch's mean counts once, unless the eval set carries `weights` (what each batch's mean
    is over: GPT-2's targets when `train.eval_batches=all` leaves a shorter last batch, see
    data/tokens.py): then the means are weighted by them, which makes the result the mean over
    every target of the split. Eval sets of equal batches carry none, so their numbers are
    computed exactly as before."""
    weights = getattr(batches, "weights", None)
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = 0
    with autocast:
        for i, batch in enumerate(batches):
            loss, metrics = recipe.loss(model, batch)
            w = 1 if weights is None else weights[i]
            for k, v in {"loss": loss, **metrics}.items():
                # weighted sums in float64: a whole split's batches times their targets
                v = v.detach().float() if weights is None else v.detach().double() * w
                sums[k] = sums.get(k, 0) + v
            n += w
    model.train(was_training)
    means = {k: float(v) / n for k, v in sums.items()}
    return {**means, **recipe.eval_metrics(means)}


class Target:
    """Steps- and time-to-target on one eval metric (lower is better unless the recipe says)."""

    def __init__(self, metric: str, value: float | None, higher_is_better: bool) -> None:
        self.metric, self.value, self.higher = metric, value, higher_is_better
        self.step: int | None = None
        self.time_s: float | None = None

    def observe(self, metrics: dict[str, float], step: int, time_s: float | None) -> None:
        if self.value is None or self.step is not None or self.metric not in metrics:
            return
        x = metrics[self.metric]
        if math.isfinite(x) and (x >= self.value if self.higher else x <= self.value):
            self.step, self.time_s = step, time_s

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "time_s": self.time_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.time_s = state["step"], state["time_s"]
