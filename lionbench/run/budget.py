"""Data budgets: `train.budget=B` trains for B x `recipe.data_per_param` tokens (or images) per
parameter, and sets `train.steps` from the model's parameter count and the data one step sees
(batch x tokens per example). 20 tokens per parameter is Chinchilla's compute-optimal ratio
(docs/references.md), so a study can compare sizes at the same multiple of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lionbench import checks, config
from lionbench.config.validate import MAX_STEPS
from lionbench.errors import UserError

if TYPE_CHECKING:
    from lionbench.recipe import Recipe



def parameter_count(recipe: Recipe) -> int:
    """The model's parameters, shared ones once, built on the meta device (no memory, no init
    cost: a 350M model counts in milliseconds)."""
    import torch

    with torch.device("meta"):
        model = recipe.build_model()
    return sum(p.numel() for p in model.parameters())


def data_unit(recipe: Recipe) -> tuple[str, int]:
    """What a budget counts ("tokens" or "images"/"examples") and how many one example holds."""
    if recipe.tokens_per_example:
        return "tokens", int(recipe.tokens_per_example)
    return "examples", 1


def budget_steps(cfg: Any, recipe: Recipe) -> tuple[int, int, int]:
    """(steps, parameters, data) of the config's budget: the fewest whole steps that see
    budget x data_per_param x parameters units (at least one), and the data those steps see."""
    budget, per_param = cfg.train.budget, cfg.recipe.get("data_per_param")
    checks.positive(budget, "train.budget")
    if per_param is None:
        raise UserError(
            f"recipe {cfg.recipe.name} has no recipe.data_per_param (the data per parameter at "
            f"train.budget=1); set it, or set train.steps instead of train.budget"
        )
    checks.positive(per_param, "recipe.data_per_param")
    params = parameter_count(recipe)
    _, per_example = data_unit(recipe)
    per_step = int(cfg.train.batch_size) * per_example
    steps = max(1, math.ceil(float(budget) * float(per_param) * params / per_step))
    if steps > MAX_STEPS:
        raise UserError(
            f"train.budget={budget} is {steps:,} steps for {params:,} parameters, more than "
            f"{MAX_STEPS:,}"
        )
    return steps, params, steps * per_step


def apply_budget(cfg: Any, recipe: Recipe, overrides: Sequence[str] = ()) -> None:
    """Set train.steps from train.budget (nothing when it is null); an explicit train.steps
    alongside a budget is refused rather than silently replaced."""
    if cfg.train.get("budget") is None:
        return
    for o in overrides:
        if config.override_key(o) == "train.steps":
            raise UserError(f"'{o}': train.budget={cfg.train.budget} sets train.steps (drop one)")
    cfg.train.steps = budget_steps(cfg, recipe)[0]
