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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench import config
from lionbench.commands import grid, manifest, screen, sweep, tuning
from lionbench.errors import UserError
from lionbench.files import atomic_write_json
from lionbench.optim.registry import CANDIDATE, OPTIMIZERS
from lionbench.run.rundir import STUDIES, manifest_path

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
    variant: list[tuning.Job]
    reference: list[tuning.Job] = field(default_factory=list)

    @property
    def jobs(self) -> list[tuning.Job]:
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


def recipe_defaults(sw: tuning.Sweep) -> tuple[int, str, list[float]]:
    """(batch size, schedule, Lion's betas) of the composed recipe: the reference condition."""
    flags, plain = config.split_args(sw.overrides)
    cfg = config.compose([*plain, f"optim={CANDIDATE}"], config.config_dirs(flags))
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


def conditions(
    sw: tuning.Sweep,
    chosen: dict[str, grid.Choice],
    small_batch: int,
    aggressive: float,
    sched: str,
    betas: list[float],
) -> list[Condition]:
    """The claim rounds' runs at the chosen settings (none without both optima). The schedule
    claim's variant is rsqrt, or cosine when the reference already is rsqrt."""
    best = {o: [c.best] for o, c in chosen.items() if c.best is not None}
    if len(best) < len(chosen):
        return []
    seeds = sw.confirm_seeds or sw.seeds
    hot = {CANDIDATE: [grid.lr_times(OPTIMIZERS[CANDIDATE], best[CANDIDATE][0], aggressive)]}
    stable, default = (",".join(map(str, b)) for b in (STABLE_BETAS, betas))
    at = f"lr x{grid.exact(aggressive)}"
    other = "cosine" if sched == "rsqrt" else "rsqrt"
    batch = f"train.batch_size={small_batch}"
    return [
        Condition("batch", batch, tuning.jobs(sw, best, seeds, (batch,), f"batch {small_batch}")),
        Condition(
            "schedule", f"sched={other}", tuning.jobs(sw, best, seeds, (f"sched={other}",), other)
        ),
        Condition(
            "betas",
            f"optim.betas=[{stable}] (both at Lion {at})",
            tuning.jobs(sw, hot, seeds, (f"optim.betas=[{stable}]",), f"{at} betas {stable}"),
            tuning.jobs(sw, hot, seeds, (f"optim.betas=[{default}]",), f"{at} betas {default}"),
        ),
    ]


def run_study(req: sweep.Request, small_batch: int | None = None, aggressive: float = 2.0) -> int:
    """The sweep, then the claim rounds; the exit code is 1 only when a run failed (bad input
    raises UserError, before any run starts)."""
    check_overrides(req.overrides)
    if not aggressive > 1:
        raise UserError(
            f"--aggressive must be > 1 (a multiple of Lion's best lr), got {aggressive}"
        )
    sw = sweep.setup(req)
    if req.name is None:
        sw.name = f"{sw.recipe}-{sw.scale}-claims"
    batch, sched, betas = recipe_defaults(sw)
    small_batch = check_small_batch(small_batch, batch)
    print(sweep.plan_line(sw), flush=True)
    chosen = tuning.tune(sw)
    if isinstance(chosen, int):
        return chosen
    conds = conditions(sw, chosen, small_batch, aggressive, sched, betas)
    for cond in conds:
        if code := tuning.launch(sw, f"claim {cond.claim}", cond.jobs):
            return code
    sweep_manifest = manifest.write_manifest(sw, chosen)
    path = write_study(sw, chosen, conds, sweep_manifest, batch, sched, betas, aggressive)
    lines = (
        (f"study manifest: {path}",)
        if conds
        else ("no claim rounds: an optimizer has no usable setting (every one diverged or failed)",)
    )
    return screen.account(sw, chosen, sweep_manifest, lines)


def write_study(
    sw: tuning.Sweep,
    chosen: dict[str, grid.Choice],
    conds: list[Condition],
    sweep_manifest: Path,
    batch: int,
    sched: str,
    betas: list[float],
    aggressive: float,
) -> Path:
    """`<results_dir>/_studies/<name>.json`: each claim's conditions and their run directories."""

    def dirs(runs: list[tuning.Run]) -> dict[str, list[str]]:
        return {o: [manifest.rel(sw, r.path) for r in runs if r.optim == o] for o in sw.optims}

    chosen_runs = [
        r
        for o, c in chosen.items()
        for r in (
            [r for r in sw.runs if r.optim == o and r.stage == "confirmation"]
            or tuning.selection_runs(sw, o, c.best if c.best is not None else float("nan"))
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
        "sweep_manifest": manifest.rel(sw, sweep_manifest),
        "seeds": sw.confirm_seeds or sw.seeds,
        "reference": {"batch_size": batch, "sched": sched, "lion_betas": betas},
        "aggressive_lr_factor": aggressive,
        "stable_betas": list(STABLE_BETAS),
        "best": {o: c.best for o, c in chosen.items()},
        "claims": claims,
    }
    path = manifest_path(sw.results_dir, STUDIES, sw.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, study)
    return path
