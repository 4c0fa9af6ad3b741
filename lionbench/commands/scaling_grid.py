"""The points of a scaling study: each size of the recipe's ladder x each data budget, with
what the budget means for that model (parameters, tokens or examples, steps), and the overrides
that set a point on every run. Checked before anything trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lionbench import config
from lionbench.commands.grid import exact
from lionbench.errors import UserError

if TYPE_CHECKING:
    from lionbench.commands.tuning import Sweep

REPEATS_OK = 2.0  # passes over the train split beyond which the plan warns
EVALS_PER_RUN = 4  # evaluations in a run after step 0 (its final loss is what the study compares)


@dataclass(frozen=True)
class Point:
    """One size x budget of the grid, with what the budget means for that model."""

    size: str
    budget: float
    params: int
    data: int  # tokens (or examples) one run trains on: steps x batch (x tokens per example)
    steps: int
    passes: float | None = None  # over the training split (None: its size is unknown)

    @property
    def label(self) -> str:
        return f"{self.size} x{exact(self.budget)}"

    @property
    def eval_every(self) -> int:
        """Steps between evaluations: the last of `EVALS_PER_RUN` falls on the final step."""
        return max(1, -(-self.steps // EVALS_PER_RUN))

    @property
    def evals(self) -> int:
        """Evaluations in a run: at step 0, every `eval_every` steps, and at the end."""
        return 1 + -(-self.steps // self.eval_every)

    @property
    def overrides(self) -> list[str]:
        """What sets the point: the size, the budget (which sets train.steps) and evaluations
        every quarter of the run (the final one is what counts)."""
        every = self.eval_every
        return [
            f"recipe.size={self.size}",
            f"train.budget={exact(self.budget)}",
            f"train.eval_interval={every}",
        ]


def parse_sizes(text: str) -> list[str]:
    """`--sizes l2w32,l2w64`: names, each once (checked against the ladder in `points`)."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError("--sizes is empty (accepted: names of recipe.sizes; see lionbench list)")
    if len(set(names)) != len(names):
        raise UserError(f"--sizes has repeated names: {text} (each once)")
    return names


@dataclass(frozen=True)
class Grid:
    """The study's points, sizes in ladder order, and what a budget counts."""

    points: list[Point]
    unit: str  # tokens | examples
    per_param: float  # recipe.data_per_param: the data per parameter at budget 1

    def warnings(self) -> list[str]:
        """Repeated training data: the passes grow with size and budget, so a trend would mix
        memorisation into the effect of size."""
        over = [p for p in self.points if p.passes and p.passes > REPEATS_OK]
        if not over:
            return []
        worst = max(over, key=lambda p: p.passes or 0)
        return [
            f"warning: {len(over)} of {len(self.points)} points pass over their train split more "
            f"than {REPEATS_OK:g} times ({worst.label}: {worst.passes:.3g}); repetition grows "
            f"with size and budget, and the trend would mix it with size (more data: "
            f"recipe.builtin.train_sequences=..., or token files)"
        ]


def make_grid(sw: Sweep, sizes: list[str], budgets: list[float]) -> Grid:
    """Every point of the grid, each size checked as its runs will be (the ladder, the model,
    the device's memory) before anything trains."""
    from lionbench.config.ladder import sized_config, sizes_of
    from lionbench.recipe import load_recipe
    from lionbench.run.budget import budget_steps, data_unit
    from lionbench.run.launch import check_memory

    if not budgets:
        raise UserError("--budgets is empty (accepted: multiples of the reference, e.g. 1,2)")
    flags, plain = config.split_args(sw.overrides)
    extra = config.config_dirs(flags)
    ladder = list(sizes_of(config.compose(plain, extra)))
    out, unit, per_param = [], "tokens", math.nan
    for size in sorted(sizes, key=lambda s: ladder.index(s) if s in ladder else -1):
        cfg = sized_config([*plain, f"optim={sw.baseline}"], size, extra)
        recipe = load_recipe(cfg)
        recipe.check()
        check_memory(cfg, recipe)
        unit, per_param = data_unit(recipe)[0], float(cfg.recipe.data_per_param)
        known = recipe.train_data_size()
        for b in sorted(budgets):
            cfg.train.budget = b
            steps, params, data = budget_steps(cfg, recipe)
            if out and out[-1].size == size and out[-1].steps == steps:
                raise UserError(
                    f"--budgets {exact(out[-1].budget)} and {exact(b)} are both {steps} steps at "
                    f"{size}: one run (accepted: budgets further apart)"
                )
            out.append(Point(size, b, params, data, steps, data / known if known else None))
    return Grid(out, unit, per_param)
