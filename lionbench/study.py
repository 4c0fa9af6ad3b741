"""`lionbench study claims`: exactly the runs the paper's six claims need, on one recipe.

The study is a `lionbench sweep` (selection, extensions, confirmation: docs/design.md, "Sweep
manifest") followed by three claim rounds, each on the confirmation seeds (fresh seeds that
played no part in choosing the settings; the selection seeds when there are none), and each
varying one thing about the two chosen settings, Lion's best ratio and AdamW's best lr:

- batch: both at a smaller batch (`--small-batch`, default a quarter of the recipe's). "Gains
  grow with batch size": Lion's paired advantage over AdamW is larger at the recipe's batch;
- schedule: both under `sched=rsqrt` instead of the recipe's cosine. "Cosine helps Lion more
  than rsqrt": Lion's paired loss gain from cosine exceeds AdamW's;
- betas: Lion at an aggressive lr (`--aggressive`, default 2x its best lr) with its default
  betas and with (0.95, 0.98). "(0.95, 0.98) is more stable": lower final val loss, a diverged
  seed counting as +inf.

The state, speed, ratio and steps claims come from the sweep's own runs. The manifest
`<results_dir>/_studies/<name>.json` names the run directories of every condition, so that
`lionbench report` judges each claim with the paired statistics (report/studies.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench import config, sweep
from lionbench.errors import EXIT_BAD_INPUT, UserError
from lionbench.record import json_safe

STUDY_SCHEMA = 1
CLAIMS = ("batch", "schedule", "betas")
STABLE_BETAS = (0.95, 0.98)  # the paper's setting for stability (docs/references.md)
RESERVED = ("sched", "train.batch_size", "optim.betas")


@dataclass
class Condition:
    """One claim's new runs: the variant (what `change` says), and for the betas claim its own
    reference; the other claims' reference is the chosen settings' confirmation runs."""

    claim: str
    change: str
    variant: list[sweep.Job]
    reference: list[sweep.Job] = field(default_factory=list)

    @property
    def jobs(self) -> list[sweep.Job]:
        return self.reference + self.variant


def check_overrides(overrides: list[str]) -> None:
    """The study varies the batch, the schedule and Lion's betas itself."""
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key in RESERVED or key.startswith("sched."):
            raise UserError(
                f"'{o}': the study varies {key.split('.')[0] if key.startswith('sched') else key} "
                f"itself (accepted overrides: the recipe, scale, data and anything else the "
                f"claims do not vary)"
            )


def recipe_defaults(sw: sweep.Sweep) -> tuple[int, str, list[float]]:
    """(batch size, schedule, Lion's betas) of the composed recipe: the reference condition."""
    flags, plain = config.split_args(sw.overrides)
    cfg = config.compose(plain, config.config_dirs(flags))
    return int(cfg.train.batch_size), str(cfg.sched.name), [float(b) for b in cfg.optim.betas]


def check_small_batch(small: int | None, batch: int) -> int:
    """The batch of the batch claim: smaller than the recipe's, at least 1."""
    small = max(1, batch // 4) if small is None else small
    if not 1 <= small < batch:
        raise UserError(
            f"--small-batch must be between 1 and the recipe's batch {batch - 1}, got {small} "
            f"(the claim compares the recipe's batch {batch} with a smaller one)"
        )
    return small


def setting_args(sw: sweep.Sweep, optim: str, value: float) -> list[str]:
    """The overrides of a chosen setting (AdamW: lr multiplier; Lion: ratio)."""
    if optim == "adamw":
        return ["optim=adamw", f"optim.lr={config.decimal_mul(value, sw.base_lr)!r}"]
    return ["optim=lion", f"optim.ratio={sweep.fmt(value)}"]


def jobs_for(
    sw: sweep.Sweep, seeds: list[int], points: dict[str, float], extra: list[str], label: str
) -> list[sweep.Job]:
    """One job per (optimizer, seed group) in the sweep's interleaved order."""
    return [
        sweep.Job(
            optim,
            [points[optim]],
            group,
            [
                "-m",
                *sw.overrides,
                f"seed={','.join(map(str, group))}",
                f"sweep_name={sw.name}",
                *sw.extra,
                *setting_args(sw, optim, points[optim]),
                *extra,
            ],
            label,
        )
        for optim, group in sweep.order(sw, seeds)
        if optim in points
    ]


def conditions(
    sw: sweep.Sweep,
    chosen: dict[str, sweep.Choice],
    small_batch: int,
    aggressive: float,
    sched: str,
    betas: list[float],
) -> list[Condition]:
    """The claim rounds' runs at the chosen settings (none without both optima). The schedule
    claim's variant is rsqrt, or cosine when the reference already is rsqrt."""
    best = {o: c.best for o, c in chosen.items() if c.best is not None}
    if len(best) < 2:
        return []
    seeds = sw.confirm_seeds or sw.seeds
    betas_text = ",".join(map(str, STABLE_BETAS))
    # lr x aggressive: the ratio divided by it
    hot = {"lion": config.decimal_div(best["lion"], aggressive)}
    default_betas = ",".join(map(str, betas))
    other = "cosine" if sched == "rsqrt" else "rsqrt"
    return [
        Condition(
            "batch",
            f"train.batch_size={small_batch}",
            jobs_for(sw, seeds, best, [f"train.batch_size={small_batch}"], f"batch {small_batch}"),
        ),
        Condition(
            "schedule", f"sched={other}", jobs_for(sw, seeds, best, [f"sched={other}"], other)
        ),
        Condition(
            "betas",
            f"optim.betas=[{betas_text}] (both at Lion lr x{sweep.fmt(aggressive)})",
            jobs_for(
                sw,
                seeds,
                hot,
                [f"optim.betas=[{betas_text}]"],
                f"lr x{sweep.fmt(aggressive)} betas {betas_text}",
            ),
            jobs_for(
                sw,
                seeds,
                hot,
                [f"optim.betas=[{default_betas}]"],
                f"lr x{sweep.fmt(aggressive)} betas {default_betas}",
            ),
        ),
    ]


def run_study(
    ratios: list[float],
    seeds: list[int],
    name: str | None,
    launcher: str,
    overrides: list[str],
    *,
    adamw_lrs: list[float] | None = None,
    confirm_seeds: list[int] | None = None,
    max_extend: int = 2,
    small_batch: int | None = None,
    aggressive: float = 2.0,
) -> int:
    """The sweep, then the claim rounds; the exit code is 1 only when a run failed."""
    try:
        check_overrides(overrides)
        if not aggressive > 1:
            raise UserError(
                f"--aggressive must be > 1 (a multiple of Lion's best lr), got {aggressive}"
            )
        sw = sweep.setup(
            ratios, seeds, name or None, launcher, overrides, adamw_lrs, confirm_seeds, max_extend
        )
        if name is None:
            sw.name = f"{sw.recipe}-{sw.scale}-claims"
        batch, sched, betas = recipe_defaults(sw)
        small_batch = check_small_batch(small_batch, batch)
        print(sweep.plan_line(sw), flush=True)
        chosen = sweep.tune(sw)
        if isinstance(chosen, int):
            return chosen
        conds = conditions(sw, chosen, small_batch, aggressive, sched, betas)
        for cond in conds:
            if code := sweep.launch(sw, f"claim {cond.claim}", cond.jobs):
                return code
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    manifest = sweep.write_manifest(sw, chosen)
    path = write_study(sw, chosen, conds, manifest, batch, sched, betas, aggressive)
    lines = (
        (f"study manifest: {path}",)
        if conds
        else ("no claim rounds: an optimizer has no usable setting (every one diverged or failed)",)
    )
    return sweep.account(sw, chosen, manifest, lines)


def write_study(
    sw: sweep.Sweep,
    chosen: dict[str, sweep.Choice],
    conds: list[Condition],
    sweep_manifest: Path,
    batch: int,
    sched: str,
    betas: list[float],
    aggressive: float,
) -> Path:
    """`<results_dir>/_studies/<name>.json`: each claim's conditions and their run directories."""
    import json

    from lionbench.track import atomic_write_text

    def dirs(runs: list[sweep.Run]) -> dict[str, list[str]]:
        return {o: [sweep.rel(sw, r.path) for r in runs if r.optim == o] for o in sweep.OPTIMS}

    chosen_runs = [
        r
        for o, c in chosen.items()
        for r in (
            [r for r in sw.runs if r.optim == o and r.stage == "confirmation"]
            or sweep.selection_runs(sw, o, c.best if c.best is not None else float("nan"))
        )
    ]
    claims: dict[str, Any] = {}
    for cond in conds:
        mine = [r for r in sw.runs if r.stage == f"claim {cond.claim}"]
        variant = {j.label for j in cond.variant}
        claims[cond.claim] = {
            "change": cond.change,
            "reference": dirs([r for r in mine if r.label not in variant] if cond.reference
                              else chosen_runs),
            "variant": dirs([r for r in mine if r.label in variant]),
        }  # fmt: skip
    study = {
        "schema_version": STUDY_SCHEMA,
        "name": sw.name,
        "recipe": sw.recipe,
        "scale": sw.scale,
        "sweep_manifest": sweep.rel(sw, sweep_manifest),
        "seeds": sw.confirm_seeds or sw.seeds,
        "reference": {"batch_size": batch, "sched": sched, "lion_betas": betas},
        "aggressive_lr_factor": aggressive,
        "stable_betas": list(STABLE_BETAS),
        "best": {o: c.best for o, c in chosen.items()},
        "claims": claims,
    }
    path = sw.results_dir / "_studies" / f"{sw.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(json_safe(study), indent=2) + "\n")
    return path
