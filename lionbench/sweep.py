"""`lionbench sweep`: Lion at several lr/wd ratios against the recipe's AdamW baseline, over seeds.

It is two Hydra multiruns through `lionbench run -m` (AdamW x seeds, then Lion x ratios x seeds),
so any Hydra launcher works and every run is an ordinary run directory: finished runs are skipped,
unfinished ones start over, and one run that diverges or fails never stops the others. At the end
it accounts for every run it asked for, from the run directories themselves.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from lionbench import app, config
from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError
from lionbench.record import Status, status_of

LAUNCHERS = ("basic", "joblib")
RESERVED = ("optim", "optim.ratio", "seed", "sweep_name")


def parse_list(text: str, name: str, kind: type) -> list[Any]:
    """`--ratios 3,5,10` / `--seeds 0,1,2`: distinct finite ratios > 0, or seeds >= 0."""
    accepted = (
        "comma-separated numbers > 0, e.g. 3,5,10"
        if kind is float
        else "comma-separated integers >= 0, e.g. 0,1,2"
    )
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"{name} must be a comma-separated list of {kind.__name__}s, got {text!r} "
            f"(accepted: {accepted})"
        ) from None
    if not values:
        raise UserError(f"{name} is empty (accepted: {accepted})")
    if kind is float and any(not math.isfinite(v) or v <= 0 for v in values):
        raise UserError(
            f"{name} must be > 0 and finite, got {text!r} (Lion's lr = adamw.lr / ratio; "
            f"accepted: {accepted})"
        )
    if kind is int and any(v < 0 for v in values):
        raise UserError(f"{name} must be >= 0, got {text!r} (accepted: {accepted})")
    if len(set(values)) != len(values):
        raise UserError(f"{name} has repeated values: {text!r} (each value once)")
    return values


def check_name(name: str | None) -> None:
    """The sweep name becomes the override sweep_name=NAME of every run, so a comma would turn
    it into a sweep over names, and '=' or spaces would not parse."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(
            f"--name {name!r} is not a valid sweep name (accepted: letters, digits, '.', '_', '-')"
        )


def plan(
    ratios: list[float], seeds: list[int], name: str | None, launcher: str, overrides: list[str]
) -> tuple[str, list[list[str]]]:
    """The sweep name and the `lionbench run` argument lists of its multiruns."""
    check_name(name)
    if launcher not in LAUNCHERS:
        raise UserError(
            f"unknown --launcher '{launcher}' (accepted: {', '.join(LAUNCHERS)}; "
            f"or pass hydra/launcher=... as an override)"
        )
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key in RESERVED:
            raise UserError(f"'{o}': sweep sets {key} itself (use --ratios and --seeds)")
    if name is None:
        cfg = config.compose(list(overrides))
        name = f"{cfg.recipe.name}-{cfg.scale}-ratio-sweep"
    common = ["-m", *overrides, f"seed={','.join(map(str, seeds))}", f"sweep_name={name}"]
    if launcher == "joblib":
        common.append("hydra/launcher=joblib")
    ratio_list = ",".join(f"{r:g}" for r in ratios)
    return name, [[*common, "optim=adamw"], [*common, "optim=lion", f"optim.ratio={ratio_list}"]]


def run_sweep(
    ratios: list[float], seeds: list[int], name: str | None, launcher: str, overrides: list[str]
) -> int:
    try:
        name, jobs = plan(ratios, seeds, name, launcher, overrides)
        checked = [app.precheck(args) or [] for args in jobs]
        runs = [run for cfgs in checked for run in app.run_dirs(cfgs)]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    before = {d: status_of(d) for _, d in runs}
    print(
        f"sweep {name}: {len(runs)} runs ({len(seeds)} AdamW, {len(ratios) * len(seeds)} Lion "
        f"at ratios {', '.join(f'{r:g}' for r in ratios)}); "
        f"{sum(s.finished for s in before.values())} already finished",
        flush=True,
    )
    for args, cfgs in zip(jobs, checked, strict=True):
        code = app.main(args, cfgs)
        if code >= 128:  # interrupted by a signal: checkpointed; the same command resumes
            return code
    return account(name, runs, before)


def account(name: str, runs: list[tuple[dict[str, Any], Path]], before: dict[Path, Status]) -> int:
    """One screen: what ran, what was skipped, what diverged or failed, and where it all is."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {name}", title_justify="left")
    for col in ("optim", "ratio", "seed", "status", "run directory"):
        table.add_column(col)
    counts: Counter[str] = Counter()
    for cfg, d in runs:
        status = status_of(d)
        if before[d].finished and status == before[d]:
            shown = f"skipped ({status})"
            counts["skipped"] += 1
        else:
            shown = status
            counts[str(status)] += 1
        ratio = f"{cfg['optim']['ratio']:g}" if cfg["optim"]["name"] == "lion" else "-"
        style = {"failed": "red", "diverged": "yellow", "partial": "red", "missing": "red"}
        table.add_row(
            cfg["optim"]["name"],
            ratio,
            str(cfg["seed"]),
            f"[{style.get(status, 'green')}]{shown}[/]",
            str(d),
        )
    console = Console()
    console.print(table)
    order = ("completed", "skipped", "diverged", "failed", "partial", "missing")
    console.print("  ".join(f"{k}: {counts[k]}" for k in order if counts[k] or k in order[:4]))
    roots = sorted({str(d.parent) for _, d in runs})
    console.print(
        f"results in {', '.join(roots)}; report with: lionbench report "
        f"{' '.join(sorted({str(d.parent.parent) for _, d in runs}))}"
    )
    return EXIT_FAILED if any(status_of(d).problem for _, d in runs) else EXIT_OK
