"""`lionbench sweep`: the candidate (Lion) against the baseline (AdamW), each tuned along its own
axis from the registry with an equal budget, grids extended until their optimum is interior,
then select-then-confirm (docs/design.md, "Sweep manifest").

This module checks what the sweep was asked for (`setup`) and runs it; the grids are grid.py's,
the rounds tuning.py's, the manifest manifest.py's and the final screen screen.py's. Runs go
seed-major and alternate which optimizer goes first, so that drift of the machine over the sweep
does not line up with the optimizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lionbench import checks, config
from lionbench.commands import grid, manifest, screen
from lionbench.commands.grid import exact
from lionbench.commands.tuning import Sweep, tune
from lionbench.errors import UserError
from lionbench.optim.registry import BASELINE, CANDIDATE, OPTIMIZERS, RATIO
from lionbench.run.slurm import check_launcher

LAUNCHERS = ("basic", "joblib")
RESERVED = ("optim", "seed", "sweep_name")
DERIVED = ("optim.lr", "optim.weight_decay", "optim.ratio")


def check_name(name: str | None) -> None:
    """The sweep name becomes the override sweep_name=NAME of every run, so a comma would turn
    it into a sweep over names, and '=' or spaces would not parse."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(
            f"--name {name!r} is not a valid sweep name (accepted: letters, digits, '.', '_', '-')"
        )


def check_overrides(overrides: list[str]) -> None:
    """The sweep sets the optimizer, its lr, wd and ratio, the seed and the name itself: an
    override of one of them would silently give every arm the same value."""
    for o in overrides:
        key = config.override_key(o)
        if key in RESERVED:
            raise UserError(f"'{o}': sweep sets {key} itself (use --ratios and --seeds)")
        if key in DERIVED:
            raise UserError(
                f"'{o}': the sweep derives {key} for every run (AdamW: recipe.adamw.lr x "
                f"--adamw-lrs; Lion: recipe.adamw.lr / --ratios); set recipe.adamw.lr=... or "
                f"recipe.adamw.weight_decay=... to move the whole grid"
            )


@dataclass(frozen=True)
class Request:
    """What `lionbench sweep` (or `study claims`) was asked for: the candidate's ratios, the
    baseline's lr multipliers (default: as many, around 1), the seeds, and the Hydra overrides
    every run gets."""

    ratios: list[float]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    name: str | None = None
    launcher: str = "basic"
    adamw_lrs: list[float] | None = None
    confirm_seeds: list[int] | None = None  # None: as many fresh seeds; []: no confirmation
    max_extend: int = 2
    optims: list[str] = field(default_factory=lambda: [CANDIDATE])  # the candidates
    lrs: list[float] | None = None  # lr multipliers of lr-axis candidates (default: as AdamW's)

    def with_fresh_seeds(self, n: int) -> Request:
        """This request, confirming on `n` fresh seeds unless --confirm-seeds said which."""
        return (
            self
            if self.confirm_seeds is not None
            else replace(self, confirm_seeds=self.fresh_seeds(n))
        )

    def fresh_seeds(self, n: int) -> list[int]:
        """The `n` seeds after the largest selection seed: never one that chose a setting."""
        return list(range(max(self.seeds) + 1, max(self.seeds) + 1 + n))


def setup(req: Request) -> Sweep:
    """Check everything that can be checked before a run starts; raise UserError."""
    check_name(req.name)
    if req.launcher not in LAUNCHERS:
        raise UserError(
            f"unknown --launcher '{req.launcher}' (accepted: {', '.join(LAUNCHERS)}; "
            f"or pass hydra/launcher=... as an override)"
        )
    check_overrides(req.overrides)
    if req.max_extend < 0:
        raise UserError(f"--max-extend must be >= 0, got {req.max_extend} (0: never extend)")
    seeds = req.seeds
    confirm_seeds = req.confirm_seeds
    if confirm_seeds is None:
        confirm_seeds = req.fresh_seeds(len(seeds))
    if reused := sorted(set(confirm_seeds) & set(seeds)):
        raise UserError(
            f"--confirm-seeds {', '.join(map(str, reused))} are also in --seeds (accepted: "
            f"fresh seeds, or none)"
        )
    flags, plain = config.split_args(req.overrides)
    check_launcher(plain)
    cfg = config.compose(plain, config.config_dirs(flags))
    check_candidates(req.optims)
    baseline_grid = list(req.adamw_lrs or grid.default_multipliers(len(req.ratios)))
    lr_grid = list(req.lrs or baseline_grid)  # the same budget along every lr axis
    initial = {BASELINE: baseline_grid}
    for o in req.optims:
        initial[o] = list(req.ratios) if OPTIMIZERS[o].tuning_axis == RATIO else lr_grid
    return Sweep(
        name=req.name or default_name(cfg, req.optims),
        overrides=list(req.overrides),
        extra=["hydra/launcher=joblib"] if req.launcher == "joblib" else [],
        recipe=str(cfg.recipe.name),
        scale=str(cfg.scale),
        results_dir=Path(str(cfg.results_dir)).expanduser(),
        base={o: recipe_base(cfg, o) for o in initial},
        seeds=list(seeds),
        confirm_seeds=list(confirm_seeds),
        max_extend=req.max_extend,
        initial=initial,
    )


def check_candidates(optims: list[str]) -> None:
    """`--optims`: registered optimizers, each once, the baseline not among them."""
    accepted = [o for o in OPTIMIZERS if o != BASELINE]
    if not optims:
        raise UserError(f"--optims is empty (accepted: {', '.join(accepted)})")
    for o in optims:
        if o == BASELINE:
            raise UserError(f"--optims {o}: {o} is the baseline every sweep tunes; name the "
                            f"candidates (accepted: {', '.join(accepted)})")  # fmt: skip
        checks.choice(o, "--optims", accepted)
    if len(set(optims)) != len(optims):
        raise UserError(f"--optims has repeated names: {','.join(optims)} (each once)")


def default_name(cfg: Any, optims: list[str]) -> str:
    """`gpt2-small-ratio-sweep` for Lion alone (as before), else `gpt2-small-lion-muon-sweep`."""
    if optims == [CANDIDATE]:
        return f"{cfg.recipe.name}-{cfg.scale}-ratio-sweep"
    return f"{cfg.recipe.name}-{cfg.scale}-{'-'.join(optims)}-sweep"


def recipe_base(cfg: Any, optim: str) -> tuple[float, float]:
    """(lr, wd) of the recipe block the optimizer's grid scales (Lion's: recipe.adamw)."""
    block_name = OPTIMIZERS[optim].baseline_block
    block = cfg.recipe.get(block_name) or {}
    if block.get("lr") is None:
        raise UserError(
            f"recipe {cfg.recipe.name} has no recipe.{block_name}.lr (the sweep scales it)"
        )
    return float(block["lr"]), float(block.get("weight_decay") or 0.0)


def run_sweep(req: Request) -> int:
    """The whole sweep; the exit code is 1 only when a run failed (bad input raises UserError,
    before any run starts)."""
    sw = setup(req)
    print(plan_line(sw), flush=True)
    chosen = tune(sw)
    if isinstance(chosen, int):
        return chosen
    return screen.account(sw, chosen, manifest.write_manifest(sw, chosen))


def plan_line(sw: Sweep) -> str:
    """What the sweep will try: `AdamW lr x 0.5, 1, 2 (recipe.adamw.lr 0.003, wd 0.1) and Lion
    ratios 3, 5, 10`, the seeds and the extension budget."""
    grids = []
    for o, values in sw.initial.items():
        spec, (lr, wd) = OPTIMIZERS[o], sw.base[o]
        shown = ", ".join(exact(v) for v in values)
        if spec.tuning_axis == RATIO:
            grids.append(f"{spec.title} ratios {shown}")
        else:
            base = f"recipe.{spec.baseline_block}.lr {exact(lr)}, wd {exact(wd)}"
            grids.append(f"{spec.title} lr x {shown} ({base})")
    confirm_text = ", ".join(map(str, sw.confirm_seeds)) or "none"
    return (
        f"sweep {sw.name}: {' and '.join(grids)}; selection seeds "
        f"{', '.join(map(str, sw.seeds))}, up to {sw.max_extend} extension points per "
        f"optimizer, confirmation seeds {confirm_text}"
    )
