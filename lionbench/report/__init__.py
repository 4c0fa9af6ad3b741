"""`lionbench report`: run directories -> one pandas DataFrame -> tables, plots and a verdict.

The modules go one way, each usable without the next: load.py (run directories -> DataFrames),
arms.py (arm labels and the baseline arm), analyse.py (settings and their tables), claims.py
(the paper's Lion claims), studies.py (sweep and study manifests: confirmed verdicts and the
six claims), scaling.py (scaling studies: effective-data speedups and their trend with size),
profiles.py (performance profiles across settings), plots.py (matplotlib, imported only with
`--out`), render.py (console, markdown, HTML, CSV, Parquet). Nothing is
dropped silently: diverged, failed, unfinished and corrupt runs are listed, and never count as
completed.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import pandas as pd

from lionbench.errors import UserError, check_output_dir
from lionbench.report.analyse import Setting, analyse
from lionbench.report.arms import DEFAULT_BASELINE, arm_labels, choose_baseline
from lionbench.report.headline import headline, overview
from lionbench.report.load import load_runs
from lionbench.report.profiles import Profile, performance_profiles
from lionbench.report.render import display_tables, markdown_table, problem_table, render
from lionbench.report.scaling import ScalingStudy, read_scaling
from lionbench.report.studies import Study, read_studies, tuned_baselines
from lionbench.report.targets import default_targets
from lionbench.run.rundir import find_run_dirs

__all__ = [
    "DEFAULT_BASELINE",
    "Profile",
    "ScalingStudy",
    "Setting",
    "Study",
    "analyse",
    "arm_labels",
    "check_options",
    "choose_baseline",
    "default_targets",
    "display_tables",
    "find_run_dirs",
    "headline",
    "load_runs",
    "markdown_table",
    "overview",
    "performance_profiles",
    "problem_table",
    "read_scaling",
    "read_studies",
    "render",
    "report",
    "seeds_plan",
    "settings_of",
]


def check_options(roots: list[Path], out: Path | None, targets: list[float]) -> None:
    """Reject bad paths and targets before reading a single run (`--by` keys are checked
    against the run configs in `load_runs`, `--baseline` against their optimizers)."""
    for root in roots:
        if not root.exists():
            raise UserError(f"results directory {root} does not exist")
        if not root.is_dir():
            raise UserError(
                f"results path {root} is not a directory (give results directories, e.g. results)"
            )
    for t in targets:
        if not math.isfinite(t) or t < 0:
            raise UserError(f"--target must be a finite val loss >= 0, got {t}")
    if out is not None:
        check_output_dir(out)


def check_baseline(baseline: str, runs: pd.DataFrame) -> None:
    """A `--baseline` that no run used is a typo, not a setting without a baseline."""
    names = sorted({o for o in runs.get("optim", pd.Series(dtype=object)).dropna()})
    if baseline not in names:
        close = difflib.get_close_matches(baseline, names, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(
            f"unknown --baseline '{baseline}'{hint} (optimizers of these runs: "
            f"{', '.join(names) or 'none'})"
        )


def settings_of(
    roots: list[Path], targets: list[float], by: list[str], baseline: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, list[Setting]]:
    """(runs, curves, settings) of the run directories under `roots`: each setting's arms
    compared with optimizer `baseline`'s arm, the tuned one where a sweep or study chose it."""
    runs, curves = load_runs(roots, by)
    if baseline is not None:
        check_baseline(baseline, runs)
    name = baseline or DEFAULT_BASELINE
    settings = analyse(runs, curves, targets, name, tuned_baselines(roots, runs, name))
    return runs, curves, settings


def seeds_plan(
    roots: list[Path], metric: str, effects: list[float], arms: int | None, baseline: str | None
) -> pd.DataFrame:
    """`lionbench plan`: the seeds a comparison needs, per setting (report/plan.py)."""
    from lionbench.report.plan import check_metric, plan

    check_options(roots, None, [])
    check_metric(metric)
    if arms is not None and arms < 1:
        raise UserError(
            f"--arms must be >= 1, got {arms} (the candidates compared with the baseline)"
        )
    return plan(settings_of(roots, [], [], baseline)[2], metric, effects, arms)


def report(
    roots: list[Path],
    out: Path | None,
    targets: list[float],
    by: list[str],
    quiet: bool = False,
    baseline: str | None = None,
) -> list[Setting]:
    """Read the run directories under `roots`, compare every arm with optimizer `baseline`'s
    recipe arm (default: AdamW's) and write the report to `out` (None: console only)."""
    check_options(roots, out, targets)
    runs, curves, settings = settings_of(roots, targets, by, baseline)
    confirmed = read_studies(roots, runs, curves)
    scaling = read_scaling(roots, runs)
    problems = problem_table(runs)
    profile = performance_profiles(settings, curves)
    if out is not None:
        from lionbench.report.figures import make_all_plots
        from lionbench.report.profile_view import draw_profiles
        from lionbench.report.scaling_plots import draw_scaling

        out.mkdir(parents=True, exist_ok=True)
        make_all_plots(settings, out)
        if profile is not None:
            draw_profiles(profile, out)
        draw_scaling(scaling, out)
        render(settings, problems, runs, out, confirmed, profile, scaling)
    if not quiet:
        from lionbench.report.terminal import print_console

        notes = runs.attrs.get("warnings", [])
        print_console(settings, problems, confirmed, notes, profile, scaling)
    return settings
