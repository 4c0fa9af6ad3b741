"""`lionbench study claims`: exactly the runs the paper's six claims need, on one recipe.

The study is a `lionbench sweep` (selection, extensions, confirmation: docs/design.md, "Sweep
manifest") followed by three claim rounds, each judged on the confirmation seeds (fresh seeds
that played no part in choosing the settings; the selection seeds when there are none):

- batch: both optimizers at a smaller batch (`--small-batch`, default a quarter of the
  recipe's), each *retuned* there: the best lr moves with the batch, differently for a sign
  update and for Adam, so the claim compares tuned with tuned. Every optimizer gets the same
  small budget: its best setting at the recipe's batch and a factor 2 either side on the
  selection seeds, one extension at an edge, then its best on the confirmation seeds. "Gains
  grow with batch size": Lion's paired advantage over AdamW is larger at the recipe's batch;
- schedule: both under `sched=rsqrt` instead of the recipe's cosine, retuned the same way.
  "Cosine helps Lion more than rsqrt": Lion's paired loss gain from cosine exceeds AdamW's;
- betas: Lion at an aggressive lr (`--aggressive`, default 2x its best lr) with its default
  betas and with (0.95, 0.98). "(0.95, 0.98) is more stable": lower final val loss, a diverged
  seed counting as +inf.

The state, speed, ratio and steps claims come from the sweep's own runs. The manifest
`<results_dir>/_studies/<name>.json` names the run directories of every condition, so that
`lionbench report` judges each claim with the paired statistics (report/studies.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
CLAIM_PAIRS = 6  # default confirmation seeds: the paired tests need 6 pairs to reach p < 0.05
STABLE_BETAS = (0.95, 0.98)  # the paper's setting for stability (docs/references.md)
RESERVED = ("sched", "train.batch_size", "optim.betas")


@dataclass
class Condition:
    """One claim's runs: the reference (the chosen settings' confirmation runs, or for the
    betas claim its own) and the variant (what `change` says); `tuned`, for a retuned
    condition, each optimizer's manifest entry of its tuning there."""

    claim: str
    change: str
    reference: list[tuning.Run] = field(default_factory=list)
    variant: list[tuning.Run] = field(default_factory=list)
    tuned: dict[str, Any] = field(default_factory=dict)


def check_overrides(overrides: list[str]) -> None:
    """The study varies the batch, the schedule and Lion's betas itself."""
    for o in overrides:
        key = config.override_key(o)
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


def chosen_runs(sw: tuning.Sweep, chosen: dict[str, grid.Choice]) -> list[tuning.Run]:
    """Each optimizer's chosen setting's confirmation runs (its selection runs without them)."""
    return [
        r
        for o, c in chosen.items()
        for r in (
            [r for r in sw.runs if r.optim == o and r.stage == "confirmation"]
            or tuning.selection_runs(sw, o, c.best if c.best is not None else float("nan"))
        )
    ]


def retune(
    sw: tuning.Sweep, chosen: dict[str, grid.Choice], claim: str, override: str, label: str
) -> Condition | int:
    """Every optimizer tuned again under `override` with the same small budget: its chosen
    setting and a factor 2 either side on the selection seeds, one extension at an edge, then
    its best on the confirmation seeds. The condition's variant is those confirmation runs."""
    around = {o: [c.best / grid.STEP, c.best, c.best * grid.STEP] for o, c in chosen.items()
              if c.best is not None}  # fmt: skip
    sub = replace(sw, overrides=[*sw.overrides, override], initial=around, grids={}, runs=[],
                  max_extend=1)  # fmt: skip
    print(f"sweep {sw.name}: claim {claim}: retuning every optimizer at {override}", flush=True)
    got = tuning.tune(sub)
    if isinstance(got, int):
        return got
    cond = Condition(claim, override, chosen_runs(sw, chosen))
    cond.tuned = {o: manifest.grid_entry(sub, o, c) for o, c in got.items()}
    cond.variant = [r for r in sub.runs if r.stage == "confirmation"]
    for o, c in got.items():
        print(f"{label}: {screen.optimum_line(sub, o, c)}", flush=True)
    for r in sub.runs:  # on the final screen, among the sweep's own rounds
        r.label = f"{label}, {grid.label(OPTIMIZERS[r.optim], r.value)}"
        r.stage = f"claim {claim}: {r.stage}"
    sw.runs += sub.runs
    return cond


def betas_round(
    sw: tuning.Sweep, chosen: dict[str, grid.Choice], aggressive: float, betas: list[float]
) -> Condition | int:
    """Lion at `aggressive` times its best lr with its default betas and with (0.95, 0.98)."""
    seeds = sw.confirm_seeds or sw.seeds
    spec = OPTIMIZERS[CANDIDATE]
    hot = {CANDIDATE: [grid.lr_times(spec, chosen[CANDIDATE].best, aggressive)]}  # type: ignore[arg-type]
    stable, default = (",".join(map(str, b)) for b in (STABLE_BETAS, betas))
    at = f"lr x{grid.exact(aggressive)}"
    variant = tuning.jobs(sw, hot, seeds, (f"optim.betas=[{stable}]",), f"{at} betas {stable}")
    reference = tuning.jobs(sw, hot, seeds, (f"optim.betas=[{default}]",), f"{at} betas {default}")
    first = len(sw.runs)
    if code := tuning.launch(sw, "claim betas", reference + variant):
        return code
    mine = sw.runs[first:]
    cond = Condition("betas", f"optim.betas=[{stable}] (both at Lion {at})")
    cond.variant = [r for r in mine if r.label == variant[0].label]
    cond.reference = [r for r in mine if r.label != variant[0].label]
    return cond


def claim_rounds(
    sw: tuning.Sweep,
    chosen: dict[str, grid.Choice],
    small_batch: int,
    aggressive: float,
    sched: str,
    betas: list[float],
) -> list[Condition] | int:
    """The claim rounds (none without every optimizer's best setting), or a signal's exit code.
    The schedule claim's variant is rsqrt, or cosine when the reference already is rsqrt."""
    if any(c.best is None for c in chosen.values()):
        return []
    other = "cosine" if sched == "rsqrt" else "rsqrt"
    rounds = (
        lambda: retune(
            sw, chosen, "batch", f"train.batch_size={small_batch}", f"batch {small_batch}"
        ),
        lambda: retune(sw, chosen, "schedule", f"sched={other}", other),
        lambda: betas_round(sw, chosen, aggressive, betas),
    )
    conds = []
    for make in rounds:
        cond = make()
        if isinstance(cond, int):
            return cond
        conds.append(cond)
    return conds


def run_study(req: sweep.Request, small_batch: int | None = None, aggressive: float = 2.0) -> int:
    """The sweep, then the claim rounds; the exit code is 1 only when a run failed (bad input
    raises UserError, before any run starts)."""
    check_overrides(req.overrides)
    req = req.with_fresh_seeds(CLAIM_PAIRS)
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
    conds = claim_rounds(sw, chosen, small_batch, aggressive, sched, betas)
    if isinstance(conds, int):
        return conds
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

    claims: dict[str, Any] = {
        cond.claim: {
            "change": cond.change,
            "reference": dirs(cond.reference),
            "variant": dirs(cond.variant),
            **({"tuned": cond.tuned} if cond.tuned else {}),
        }
        for cond in conds
    }
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
