"""`lionbench sweep`: Lion's lr/wd ratio against AdamW's lr, with equal tuning budgets, grids
that are extended until their optimum is interior, and select-then-confirm (docs/design.md,
"Sweep manifest").

Every run goes through `lionbench run -m` (one Hydra multirun per seed and optimizer), so any
Hydra launcher works and every run is an ordinary run directory: finished runs are skipped,
unfinished ones start over, and a run that diverges or fails never stops the others. Runs go
seed-major and alternate which optimizer goes first, so that drift of the machine over the sweep
does not line up with the optimizer. The rounds are: selection (both grids on the selection
seeds), extensions (a point beyond the edge where an optimum sits, up to --max-extend per
optimizer) and confirmation (each optimizer's best setting on fresh seeds). The manifest
`<results_dir>/_sweeps/<name>.json` says which runs selected and which confirm, so that a verdict
can rest on runs that played no part in choosing the settings.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench import app, config, slurm, track
from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError
from lionbench.record import NOT_STARTED_FIX, Status, json_safe, read_summary, status_of

LAUNCHERS = ("basic", "joblib")
RESERVED = ("optim", "seed", "sweep_name")
DERIVED = ("optim.lr", "optim.weight_decay", "optim.ratio")
OPTIMS = ("adamw", "lion")  # the order of the first seed; the next seed reverses it
STEP = 2.0  # an extension point lies a factor STEP beyond the grid's edge
MANIFEST_SCHEMA = 1
HINTS = {
    "--ratios": "Lion's lr = adamw.lr / ratio; ",
    "--adamw-lrs": "AdamW's lr = recipe.adamw.lr x multiplier; ",
}


def parse_list(text: str, name: str, kind: type) -> list[Any]:
    """`--ratios 3,5,10` / `--seeds 0,1,2`: distinct finite numbers > 0, or seeds >= 0."""
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
            f"{name} must be > 0 and finite, got {text!r} ({HINTS.get(name, '')}"
            f"accepted: {accepted})"
        )
    if kind is int and any(v < 0 for v in values):
        raise UserError(f"{name} must be >= 0, got {text!r} (accepted: {accepted})")
    if len(set(values)) != len(values):
        raise UserError(f"{name} has repeated values: {text!r} (each value once)")
    return values


def parse_confirm(text: str | None) -> list[int] | None:
    """`--confirm-seeds`: None (the default: fresh seeds), `none` (no confirmation) or seeds."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    return parse_list(text, "--confirm-seeds", int)


def default_multipliers(n: int) -> list[float]:
    """n powers of 2 centred on 1 (the recipe's lr); an even n puts its extra point below 1:
    1 -> [1], 2 -> [0.5, 1], 3 -> [0.5, 1, 2], 4 -> [0.25, 0.5, 1, 2]."""
    low = -(n // 2)
    return [2.0**k for k in range(low, low + n)]


def fmt(x: float) -> str:
    """Short when that is exact, else every digit (ratios 3.0000001 and 3.0000002 stay two)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


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
        key = o.lstrip("+~").split("=", 1)[0]
        if key in RESERVED:
            raise UserError(f"'{o}': sweep sets {key} itself (use --ratios and --seeds)")
        if key in DERIVED:
            raise UserError(
                f"'{o}': the sweep derives {key} for every run (AdamW: recipe.adamw.lr x "
                f"--adamw-lrs; Lion: recipe.adamw.lr / --ratios); set recipe.adamw.lr=... or "
                f"recipe.adamw.weight_decay=... to move the whole grid"
            )


@dataclass
class Run:
    """One run the sweep asked for: its round, arm, directory and status before the round."""

    stage: str  # selection | extension | confirmation
    optim: str
    value: float  # AdamW: lr multiplier; Lion: ratio
    seed: int
    path: Path
    before: Status
    lr: float
    weight_decay: float
    label: str | None = None  # a study's condition (None: the grid value names the run)


@dataclass
class Choice:
    """An optimizer's best grid value and where it lies in the grid."""

    best: float | None
    score: float
    position: str  # interior | bound | none (every setting diverged or failed)
    edge: str | None  # low | high | both (a one-point grid) | None


@dataclass
class Sweep:
    name: str
    overrides: list[str]
    extra: list[str]  # hydra/launcher=... from --launcher
    recipe: str
    scale: str
    results_dir: Path
    base_lr: float
    base_wd: float
    seeds: list[int]
    confirm_seeds: list[int]
    max_extend: int
    initial: dict[str, list[float]]
    grids: dict[str, list[float]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    def extended(self, optim: str) -> int:
        return len(self.grids[optim]) - len(self.initial[optim])


def setup(
    ratios: list[float],
    seeds: list[int],
    name: str | None,
    launcher: str,
    overrides: list[str],
    adamw_lrs: list[float] | None,
    confirm_seeds: list[int] | None,
    max_extend: int,
) -> Sweep:
    """Check everything that can be checked before a run starts; raise UserError."""
    check_name(name)
    if launcher not in LAUNCHERS:
        raise UserError(
            f"unknown --launcher '{launcher}' (accepted: {', '.join(LAUNCHERS)}; "
            f"or pass hydra/launcher=... as an override)"
        )
    check_overrides(overrides)
    if max_extend < 0:
        raise UserError(f"--max-extend must be >= 0, got {max_extend} (0: never extend)")
    if confirm_seeds is None:
        confirm_seeds = [max(seeds) + 1 + i for i in range(len(seeds))]
    if reused := sorted(set(confirm_seeds) & set(seeds)):
        raise UserError(
            f"--confirm-seeds {', '.join(map(str, reused))} are also in --seeds (accepted: "
            f"fresh seeds, or none)"
        )
    flags, plain = config.split_args(overrides)
    slurm.check_launcher(plain)
    cfg = config.compose(plain, config.config_dirs(flags))
    base = cfg.recipe.get("adamw") or {}
    if base.get("lr") is None:
        raise UserError(f"recipe {cfg.recipe.name} has no recipe.adamw.lr (the sweep scales it)")
    return Sweep(
        name=name or f"{cfg.recipe.name}-{cfg.scale}-ratio-sweep",
        overrides=list(overrides),
        extra=["hydra/launcher=joblib"] if launcher == "joblib" else [],
        recipe=str(cfg.recipe.name),
        scale=str(cfg.scale),
        results_dir=Path(str(cfg.results_dir)).expanduser(),
        base_lr=float(base["lr"]),
        base_wd=float(base.get("weight_decay") or 0.0),
        seeds=list(seeds),
        confirm_seeds=list(confirm_seeds),
        max_extend=max_extend,
        initial={"adamw": list(adamw_lrs or default_multipliers(len(ratios))), "lion": ratios},
    )


def job_args(sw: Sweep, optim: str, values: list[float], seeds: list[int]) -> list[str]:
    """`lionbench run` arguments of one multirun: one optimizer's grid points at the seeds.
    AdamW's lr is set as optim.lr (never through recipe.adamw.lr, from which Lion's derives)."""
    seed_list = ",".join(map(str, seeds))
    common = ["-m", *sw.overrides, f"seed={seed_list}", f"sweep_name={sw.name}", *sw.extra]
    if optim == "adamw":
        return [
            *common,
            "optim=adamw",
            "optim.lr=" + ",".join(repr(config.decimal_mul(m, sw.base_lr)) for m in values),
        ]
    return [*common, "optim=lion", "optim.ratio=" + ",".join(fmt(r) for r in values)]


def value_of(sw: Sweep, optim: str, cfg: dict[str, Any], values: list[float]) -> float:
    """Which grid value a composed job is (Hydra may order a multirun's jobs its own way)."""
    o = cfg["optim"]
    got = o["lr"] if optim == "adamw" else o["ratio"]
    for v in values:
        if (config.decimal_mul(v, sw.base_lr) if optim == "adamw" else v) == got:
            return v
    return config.decimal_div(got, sw.base_lr) if optim == "adamw" else got


def parallel_launcher(sw: Sweep) -> bool:
    """Jobs run in parallel (joblib, submitit, any `hydra/launcher=` override)."""
    return bool(sw.extra) or any(o.startswith("hydra/launcher=") for o in sw.overrides)


@dataclass
class Job:
    """One multirun of a round: an optimizer's settings at some seeds, as `lionbench run` args.
    `value` is the grid value every run of it records (AdamW: lr multiplier; Lion: ratio);
    `label` names a study's condition on the final screen (None: the grid value)."""

    optim: str
    values: list[float]
    seeds: list[int]
    args: list[str]
    label: str | None = None


def order(sw: Sweep, seeds: list[int]) -> list[tuple[str, list[int]]]:
    """(optimizer, seeds) of each multirun. One after another (the basic launcher), runs go
    seed-major with the first optimizer alternating from seed to seed, so that a machine's
    drift does not line up with the optimizer; a parallel launcher gets each optimizer's whole
    round as one multirun, so that its jobs run at once."""
    if parallel_launcher(sw):
        return [(o, seeds) for o in OPTIMS]
    return [
        (optim, [seed])
        for i, seed in enumerate(seeds)
        for optim in (OPTIMS if i % 2 == 0 else OPTIMS[::-1])
    ]


def run_round(sw: Sweep, stage: str, points: dict[str, list[float]], seeds: list[int]) -> int:
    """Run the grid points on the seeds (see `launch`)."""
    jobs = [
        Job(optim, points[optim], group, job_args(sw, optim, points[optim], group))
        for optim, group in order(sw, seeds)
        if points.get(optim)
    ]
    return launch(sw, stage, jobs)


def launch(sw: Sweep, stage: str, jobs: list[Job]) -> int:
    """Run the jobs in order; every job is checked before the first starts, and every run is
    recorded in `sw.runs` with its status before the round. A job whose runs all finished is
    not launched (on a cluster: no job to queue). Returns a signal's exit code, or 0."""
    checked = [app.precheck(job.args) or [] for job in jobs]
    pending = []  # per job: does any of its runs still need training?
    reused = []  # (config, directory) of the runs finished before: not trained, not logged
    for job, cfgs in zip(jobs, checked, strict=True):
        first = len(sw.runs)
        for cfg, path in app.run_dirs(cfgs):
            o = cfg["optim"]
            value = value_of(sw, job.optim, cfg, job.values)
            sw.runs.append(
                Run(stage, job.optim, value, cfg["seed"], path, status_of(path), o["lr"],
                    o["weight_decay"], job.label)
            )  # fmt: skip
            if sw.runs[-1].before.finished:
                reused.append((cfg, path))
        pending.append(not all(r.before.finished for r in sw.runs[first:]))
    n = sum(len(cfgs) for cfgs in checked)
    print(f"sweep {sw.name}: {stage}: {n} runs, {len(reused)} already finished", flush=True)
    track.join_sweep_group(sw.name, reused)
    for job, cfgs, todo in zip(jobs, checked, pending, strict=True):
        if not todo:  # every run finished: submit nothing (on a cluster, no job to queue)
            continue
        code = app.main(job.args, cfgs)
        if code >= 128:  # interrupted by a signal: checkpointed; the same command resumes
            return code
    return 0


def run_loss(path: Path) -> float:
    """A run's final val loss; +inf for a run that diverged, failed or has no result."""
    s = read_summary(path / "summary.json")
    if s is None or s.status != Status.COMPLETED or s.final_val_loss is None:
        return math.inf
    loss = float(s.final_val_loss)
    return loss if math.isfinite(loss) else math.inf


def selection_runs(sw: Sweep, optim: str, value: float) -> list[Run]:
    """The runs that score a grid value: its selection and extension runs, never confirmation
    runs or a study's claim runs at the same value."""
    return [
        r
        for r in sw.runs
        if r.optim == optim and r.value == value and r.stage in ("selection", "extension")
    ]


def score(sw: Sweep, optim: str, value: float) -> float:
    """Mean final val loss over the selection seeds (+inf as soon as one has no result)."""
    losses = [run_loss(r.path) for r in selection_runs(sw, optim, value)]
    return sum(losses) / len(losses) if losses else math.inf


def choose(values: list[float], scores: dict[float, float]) -> Choice:
    """The lowest mean loss (ties: the smaller value), and at which edge of the grid it is."""
    finite = [v for v in values if math.isfinite(scores.get(v, math.inf))]
    if not finite:
        return Choice(None, math.inf, "none", None)
    best = min(finite, key=lambda v: (scores[v], v))
    low, high = best == min(values), best == max(values)
    edge = "both" if low and high else "low" if low else "high" if high else None
    return Choice(best, scores[best], "interior" if edge is None else "bound", edge)


def beyond(values: list[float], edge: str | None, left: int) -> list[float]:
    """The points one STEP beyond the edge(s) where the optimum sits, at most `left` of them
    (a one-point grid is at both edges; its low side comes first)."""
    new = []
    if edge in ("low", "both"):
        new.append(min(values) / STEP)
    if edge in ("high", "both"):
        new.append(max(values) * STEP)
    return new[: max(left, 0)]


def choices(sw: Sweep) -> dict[str, Choice]:
    return {o: choose(sw.grids[o], {v: score(sw, o, v) for v in sw.grids[o]}) for o in OPTIMS}


def select(sw: Sweep) -> dict[str, Choice] | int:
    """Selection, then extension rounds until both optima are interior or out of budget.
    Returns the choices, or a signal's exit code."""
    sw.grids = {o: list(v) for o, v in sw.initial.items()}
    if code := run_round(sw, "selection", sw.grids, sw.seeds):
        return code
    while True:
        chosen = choices(sw)
        new = {
            o: pts
            for o, c in chosen.items()
            if (pts := beyond(sw.grids[o], c.edge, sw.max_extend - sw.extended(o)))
        }
        if not new:
            return chosen
        for o, pts in new.items():
            sw.grids[o] += pts
        if code := run_round(sw, "extension", new, sw.seeds):
            return code


def confirm(sw: Sweep, chosen: dict[str, Choice]) -> int:
    """Each optimizer's best setting on the fresh seeds (none for an optimizer without one)."""
    points = {o: [c.best] for o, c in chosen.items() if c.best is not None}
    if not sw.confirm_seeds or not points:
        return 0
    return run_round(sw, "confirmation", points, sw.confirm_seeds)


def tune(sw: Sweep) -> dict[str, Choice] | int:
    """Selection, extensions, then confirmation: the choices, or a signal's exit code."""
    chosen = select(sw)
    if isinstance(chosen, int):
        return chosen
    return code if (code := confirm(sw, chosen)) else chosen


def run_sweep(
    ratios: list[float],
    seeds: list[int],
    name: str | None,
    launcher: str,
    overrides: list[str],
    *,
    adamw_lrs: list[float] | None = None,
    confirm_seeds: list[int] | None = None,
    max_extend: int = 2,
) -> int:
    """The whole sweep; the exit code is 1 only when a run failed (2: bad input)."""
    try:
        sw = setup(ratios, seeds, name, launcher, overrides, adamw_lrs, confirm_seeds, max_extend)
        print(plan_line(sw), flush=True)
        chosen = tune(sw)
        if isinstance(chosen, int):
            return chosen
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    path = write_manifest(sw, chosen)
    return account(sw, chosen, path)


def plan_line(sw: Sweep) -> str:
    lrs = ", ".join(fmt(m) for m in sw.initial["adamw"])
    confirm_text = ", ".join(map(str, sw.confirm_seeds)) or "none"
    return (
        f"sweep {sw.name}: AdamW lr x {lrs} (recipe.adamw.lr {fmt(sw.base_lr)}, wd "
        f"{fmt(sw.base_wd)}) and Lion ratios {', '.join(fmt(r) for r in sw.initial['lion'])}; "
        f"selection seeds {', '.join(map(str, sw.seeds))}, up to {sw.max_extend} extension "
        f"points per optimizer, confirmation seeds {confirm_text}"
    )


# ---------------------------------------------------------------------------------- manifest


def rel(sw: Sweep, path: Path) -> str:
    """Run directories relative to the results directory, so a moved results tree still reads."""
    try:
        return str(path.relative_to(sw.results_dir))
    except ValueError:
        return str(path)


def grid_entry(sw: Sweep, optim: str, choice: Choice) -> dict[str, Any]:
    """One optimizer's part of the manifest: grid, scores, best setting, confirmation runs."""
    key = "lr_multiplier" if optim == "adamw" else "ratio"
    best = None
    if choice.best is not None:
        runs = selection_runs(sw, optim, choice.best)
        best = {
            "lr_multiplier": choice.best if optim == "adamw" else None,
            "ratio": choice.best if optim == "lion" else None,
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
    """`<results_dir>/_sweeps/<name>.json` (docs/design.md, "Sweep manifest"), atomically."""
    import json

    from lionbench.track import atomic_write_text

    manifest = {
        "schema_version": MANIFEST_SCHEMA,
        "name": sw.name,
        "recipe": sw.recipe,
        "scale": sw.scale,
        "overrides": sw.overrides,
        "baseline": {"adamw_lr": sw.base_lr, "adamw_weight_decay": sw.base_wd},
        "selection_seeds": sw.seeds,
        "confirm_seeds": sw.confirm_seeds,
        "max_extend": sw.max_extend,
        "extend_factor": STEP,
        "optimizers": {o: grid_entry(sw, o, chosen[o]) for o in OPTIMS},
    }
    path = sw.results_dir / "_sweeps" / f"{sw.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(json_safe(manifest), indent=2) + "\n")
    return path


# ----------------------------------------------------------------------------------- account


def setting_label(optim: str, value: float) -> str:
    return f"lr x{fmt(value)}" if optim == "adamw" else f"ratio {fmt(value)}"


def optimum_line(sw: Sweep, optim: str, c: Choice) -> str:
    """Where the optimizer's optimum is, in words, for the final screen."""
    grid = ", ".join(fmt(v) for v in sorted(sw.grids[optim]))
    if c.best is None:
        return f"{optim}: no optimum (every setting diverged or failed; grid {grid})"
    run = selection_runs(sw, optim, c.best)[0]
    where = (
        "interior"
        if c.position == "interior"
        else f"at the {c.edge} bound (extension limit {sw.max_extend} reached)"
    )
    return (
        f"{optim}: best {setting_label(optim, c.best)} (lr {run.lr:.3g}, wd "
        f"{run.weight_decay:.3g}), mean final val loss {c.score:.4f}; optimum {where}; "
        f"grid {grid}"
    )


def problem_line(path: Path) -> str | None:
    """For a run that failed (or left no result): what went wrong and where to read more, the
    SLURM job's log included when a cluster ran it."""
    status = status_of(path)
    if not status.problem:
        return None
    s = read_summary(path / "summary.json")
    where = [f"error: {s.error}"] if s is not None and s.error else []
    if status == Status.NOT_STARTED:
        where.append(NOT_STARTED_FIX)
    if (path / "error.log").exists():
        where.append(f"traceback: {path / 'error.log'}")
    if s is not None and s.slurm_job_id:
        where.append(f"SLURM job {s.slurm_job_id} log: {s.slurm_log or 'unknown'}")
    return f"{status}: {path}" + (f" ({'; '.join(where)})" if where else "")


def account(
    sw: Sweep, chosen: dict[str, Choice], manifest: Path, also: tuple[str, ...] = ()
) -> int:
    """One screen: every run of every round (ran, skipped, diverged or failed), where each
    optimizer's optimum lies, and where it all is."""
    from rich.table import Table

    from lionbench.console import make_console

    table = Table(title=f"sweep {sw.name}", title_justify="left")
    for col in ("round", "optim", "setting", "seed", "status", "run directory"):
        table.add_column(col)
    counts: Counter[str] = Counter()
    style = {"failed": "red", "diverged": "yellow", "partial": "red", "not_started": "red",
             "missing": "red"}  # fmt: skip
    for r in sw.runs:
        status = status_of(r.path)
        skipped = r.before.finished and status == r.before
        counts["skipped" if skipped else str(status)] += 1
        shown = f"skipped ({status})" if skipped else str(status)
        table.add_row(
            r.stage,
            r.optim,
            r.label or setting_label(r.optim, r.value),
            str(r.seed),
            f"[{style.get(status, 'green')}]{shown}[/]",
            str(r.path),
        )
    console = make_console()
    console.print(table)
    order = ("completed", "skipped", "diverged", "failed", "partial", "not_started", "missing")
    console.print(
        "  ".join(f"{k}: {counts[k]}" for k in order if counts[k] or k in order[:4]), soft_wrap=True
    )
    for r in sw.runs:
        if line := problem_line(r.path):
            console.print(line, soft_wrap=True, markup=False)
    for o in OPTIMS:
        console.print(optimum_line(sw, o, chosen[o]), soft_wrap=True)
    console.print(f"manifest: {manifest}", soft_wrap=True)
    for line in also:
        console.print(line, soft_wrap=True)
    console.print(
        f"results in {sw.results_dir / sw.recipe}; report with: lionbench report {sw.results_dir}",
        soft_wrap=True,
    )
    return EXIT_FAILED if any(status_of(r.path).problem for r in sw.runs) else EXIT_OK
