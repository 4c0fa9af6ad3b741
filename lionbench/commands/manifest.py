"""The sweep manifest, `<results_dir>/_sweeps/<name>.json` (docs/design.md, "Sweep manifest"):
each optimizer's grid, scores, best setting, and which runs selected it and which confirm it, so
that a verdict can rest on runs that played no part in choosing the settings. Written atomically
at the sweep's end; run directories are given relative to the results directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionbench.commands.grid import STEP, Choice
from lionbench.commands.tuning import Sweep, score, selection_runs
from lionbench.files import atomic_write_json
from lionbench.optim.registry import LR_MULTIPLIER, OPTIMIZERS, RATIO
from lionbench.run.rundir import SWEEPS, manifest_path

MANIFEST_SCHEMA = 1


def rel(sw: Sweep, path: Path) -> str:
    """Run directories relative to the results directory, so a moved results tree still reads."""
    try:
        return str(path.relative_to(sw.results_dir))
    except ValueError:
        return str(path)


def grid_entry(sw: Sweep, optim: str, choice: Choice) -> dict[str, Any]:
    """One optimizer's part of the manifest: grid, scores, best setting, confirmation runs."""
    key = OPTIMIZERS[optim].tuning_axis
    best = None
    if choice.best is not None:
        runs = selection_runs(sw, optim, choice.best)
        best = {
            LR_MULTIPLIER: choice.best if key == LR_MULTIPLIER else None,
            RATIO: choice.best if key == RATIO else None,
            "lr": runs[0].lr,
            "weight_decay": runs[0].weight_decay,
            "mean_final_val_loss": choice.score,
            "run_dirs": [rel(sw, r.path) for r in runs],
        }
    confirming = [r for r in sw.runs if r.optim == optim and r.stage == "confirmation"]
    return {
        "grid_key": key,
        "initial_grid": sw.initial[optim],
        "grid": sorted(sw.grids[optim]),
        "extended": sw.grids[optim][len(sw.initial[optim]) :],
        "scores": [
            {
                key: v,
                "mean_final_val_loss": score(sw, optim, v),
                "run_dirs": [rel(sw, r.path) for r in selection_runs(sw, optim, v)],
            }
            for v in sorted(sw.grids[optim])
        ],
        "best": best,
        "optimum": choice.position,
        "edge": choice.edge,
        "confirm_run_dirs": [rel(sw, r.path) for r in confirming],
    }


def write_manifest(sw: Sweep, chosen: dict[str, Choice]) -> Path:
    """`<results_dir>/_sweeps/<name>.json`, atomically (a later sweep of the name replaces it)."""
    base_lr, base_wd = sw.base[sw.baseline]
    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "name": sw.name,
        "recipe": sw.recipe,
        "scale": sw.scale,
        "overrides": sw.overrides,
        "baseline": {f"{sw.baseline}_lr": base_lr, f"{sw.baseline}_weight_decay": base_wd},
        "selection_seeds": sw.seeds,
        "confirm_seeds": sw.confirm_seeds,
        "max_extend": sw.max_extend,
        "extend_factor": STEP,
        "optimizers": {o: grid_entry(sw, o, chosen[o]) for o in sw.optims},
    }
    path = manifest_path(sw.results_dir, SWEEPS, sw.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, manifest)
    return path
