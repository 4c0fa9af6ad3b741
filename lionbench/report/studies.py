"""Sweep and study manifests -> the confirmed verdict and the paper's six claims.

A sweep manifest (`_sweeps/<name>.json`) says which runs chose each optimizer's setting and which
re-ran the chosen settings on fresh seeds. Its verdict uses the confirmation runs alone: the
selection runs chose the winners, so their losses are biased low (docs/design.md, "Verdicts").
A study manifest (`_studies/<name>.json`, `lionbench study claims`) adds the batch, schedule and
betas conditions. Every claim is one paired test (verdicts.py, stats.py); the claims are separate
questions, so their p-values are not adjusted across claims, only across arms within one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lionbench.report.analyse import COUNTED, optimizer_table
from lionbench.report.claims import (
    CLAIM_COLUMNS,
    RATIO,
    RATIO_HIGH,
    RATIO_LOW,
    Claim,
    effective_ratio,
    evidence,
    rests_on,
    speed_claim,
    state_claim,
    steps_claim,
    untested_ratios,
)
from lionbench.report.conditions import batch_claim, betas_claim, schedule_claim
from lionbench.report.targets import default_targets
from lionbench.report.values import Seeds, per_seed, run_values
from lionbench.report.verdicts import compare_arms, describe
from lionbench.run.rundir import STUDIES, SWEEPS, find_manifests

SCALING = "scaling"  # a study manifest's `kind` that is no claims study (report/scaling.py)


@dataclass
class Study:
    """One sweep (and its study, if any): the confirmed headline and the claims table."""

    name: str
    headline: str
    claims: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CLAIM_COLUMNS))
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema_version") == 1 else None


class Runs:
    """Run rows found by path: manifests name run directories relative to their results dir."""

    def __init__(self, runs: pd.DataFrame, curves: pd.DataFrame) -> None:
        self.runs, self.curves = runs, curves
        self.index = {path_key(d): i for i, d in zip(runs.index, runs["run_dir"], strict=True)}

    def rows(self, base: Path, dirs: list[str]) -> pd.DataFrame:
        """The rows of the run directories `dirs`, named relative to results directory `base`."""
        idx = [self.index[p] for d in dirs if (p := path_key(base / d)) in self.index]
        return self.runs.loc[idx]


def path_key(path: str | Path) -> str:
    """A path as the same run directory always spells it here: absolute and normalised. Run
    directories and manifests are found under the same roots, so no symlink needs resolving
    (resolving 2,000 paths was a tenth of a 1,000-run report)."""
    return os.path.normpath(os.path.abspath(path))


def read_studies(roots: list[Path], runs: pd.DataFrame, curves: pd.DataFrame) -> list[Study]:
    """One `Study` per sweep manifest under the roots, with its study's claims when one names
    the sweep; unreadable manifests are said, not skipped."""
    found = Runs(runs, curves)
    extra = {}
    for path in find_manifests(roots, STUDIES):
        data = read_manifest(path)
        if data is not None and data.get("kind") != SCALING:  # scaling.py reads those
            extra[(path.parent.parent / str(data.get("sweep_manifest"))).resolve()] = data
    out = []
    for path in find_manifests(roots, SWEEPS):
        data = read_manifest(path)
        if data is None:
            out.append(Study(path.stem, f"sweep manifest {path}: unreadable or of another schema"))
            continue
        out.append(judge(data, extra.get(path.resolve()), path.parent.parent, found))
    return out


def judge(sweep: dict[str, Any], study: dict[str, Any] | None, base: Path, found: Runs) -> Study:
    """The confirmed headline and comparisons of one sweep: every candidate's best setting
    against the baseline's best (AdamW's), on the confirmation seeds, Holm across the
    candidates; Lion's claims where Lion is among them (and its study's)."""
    opt = sweep["optimizers"]
    name = baseline_of(sweep)
    confirm = {o: found.rows(base, e.get("confirm_run_dirs", [])) for o, e in opt.items()}
    s = Study(str(sweep["name"]), "")
    cands = [o for o in opt if o != name and not confirm[o].empty]
    if confirm.get(name, pd.DataFrame()).empty or not cands:
        s.headline = (
            f"sweep {sweep['name']}: no confirmation runs of both the baseline's and a "
            f"candidate's best settings, so no confirmed verdict (the selection runs chose the "
            f"settings: their comparison is biased towards the winner)"
        )
        return s
    rows = pd.concat([confirm[o] for o in [name, *cands]])
    finished = rows[rows["status"].isin(COUNTED)]
    arm = {o: str(confirm[o]["arm"].iloc[0]) for o in [name, *cands]}
    targets = default_targets(finished[finished["status"] == "completed"], found.curves, arm[name])
    values = run_values(finished, found.curves, targets[-1:])
    s.comparisons = compare_arms(values, arm[name], [arm[o] for o in cands])
    s.headline = headline(sweep, [arm[o] for o in cands], arm[name], s.comparisons)
    if "lion" in cands and name == "adamw":  # the paper's claims are about Lion against AdamW
        table = optimizer_table(rows, rows[rows["status"] == "completed"])
        claims = [
            state_claim(table[table["optim"] == "lion"], table[table["optim"] == name].iloc[0]),
            speed_claim(values, arm[name], [arm["lion"]]),
            ratio_claim(sweep, base, found),
            steps_claim(values, arm[name], [arm["lion"]]),
        ]
        if study is not None:
            claims += study_claims(study, base, found)
        s.claims = pd.DataFrame([c for c in claims if c is not None], columns=CLAIM_COLUMNS)
    return s


def baseline_of(sweep: dict[str, Any]) -> str:
    """The optimizer every candidate is judged against: the manifest's `baseline` block is
    keyed `<name>_lr` (`adamw_lr`)."""
    keys = [k.removesuffix("_lr") for k in sweep.get("baseline", {}) if k.endswith("_lr")]
    return keys[0] if keys else "adamw"


def headline(sweep: dict[str, Any], cands: list[str], base: str, comps: pd.DataFrame) -> str:
    """`sweep X (gpt2 small): settings chosen on seeds 0,1,2; on fresh seeds (3,4,5), lion r=2
    vs adamw lr=0.003 (each optimizer's best): final val loss ... n=3 pairs (better); ...`."""
    named = len(cands) > 1  # several candidates: each comparison says whose it is
    said = "; ".join(
        f"{r['arm']}: {describe(r)}" if named else describe(r)
        for _, r in comps.iterrows()
        if r["metric"] in ("final_val_loss", "steps_to_target")
    )
    seeds = ",".join(map(str, sweep["confirm_seeds"]))
    chosen = ",".join(map(str, sweep["selection_seeds"]))
    return (
        f"sweep {sweep['name']} ({sweep['recipe']} {sweep['scale']}): settings chosen on seeds "
        f"{chosen}; on fresh seeds ({seeds}), {', '.join(cands)} vs {base} (each optimizer's "
        f"best{', Holm across the candidates' if len(cands) > 1 else ''}): {said}"
    )


# ------------------------------------------------------------------------------------ ratio


def ratio_claim(sweep: dict[str, Any], base: Path, found: Runs) -> Claim:
    """Lion's best lr against AdamW's *best* lr: r = best AdamW lr / Lion lr for every Lion
    setting tried. Decided only when the tried ratios reach beyond both edges of [3, 10] (else
    "not tested", with the --ratios to add), both optima are interior and the best Lion setting
    is significantly better (paired over the selection seeds, Holm) than every Lion setting
    whose r lies on the other side of [3, 10]."""
    lion, adamw = sweep["optimizers"]["lion"], sweep["optimizers"]["adamw"]
    if lion.get("best") is None or adamw.get("best") is None:
        return RATIO, "not enough data", "an optimizer has no setting without a diverged seed", "-"
    best_adamw_lr = float(adamw["best"]["lr"])
    base_lr = float(sweep["baseline"]["adamw_lr"])
    scale = best_adamw_lr / base_lr  # r = --ratios value x the best AdamW multiplier
    r_best = round(float(lion["best"]["ratio"]) * scale, 9)
    arms = {float(e["ratio"]): found.rows(base, e["run_dirs"]) for e in lion["scores"]}
    text = (
        f"best Lion lr {lion['best']['lr']:.3g} (r = {lion['best']['ratio']:g} from the "
        f"recipe's AdamW lr {base_lr:.3g}) is {r_best:.3g}x smaller than AdamW's best lr "
        f"{best_adamw_lr:.3g}; optima: Lion {where(lion)}, AdamW {where(adamw)}"
    )
    tried = pd.Series(sorted(arms))
    if why := untested_ratios(effective_ratio(tried * scale), tried):
        return RATIO, "not tested", f"{text}; {why} (--ratios)", f"Lion ratios {list(tried)}"
    rows = pd.concat(arms.values())
    finished = rows[rows["status"].isin(COUNTED)]
    if finished.empty:
        return RATIO, "not enough data", text + "; no selection runs found", "-"
    inside = RATIO_LOW <= r_best <= RATIO_HIGH
    best_arm = str(arms[float(lion["best"]["ratio"])]["arm"].iloc[0])
    rivals = [
        str(rows_r["arm"].iloc[0])
        for r, rows_r in arms.items()
        if not rows_r.empty and (RATIO_LOW <= round(r * scale, 9) <= RATIO_HIGH) != inside
    ]
    values = run_values(finished, found.curves, [])
    v = values[values["metric"] == "final_val_loss"]
    comps = compare_arms(v, best_arm, rivals)
    basis = rests_on(v, best_arm, rivals) + " (selection seeds)"
    text += "; the other side of [3, 10] vs the best: " + evidence(comps)
    if lion.get("optimum") != "interior" or adamw.get("optimum") != "interior":
        return RATIO, "not decided (an optimum is at its grid's bound)", text, basis
    if not (comps["verdict"] == "worse").all():
        return RATIO, "no significant difference", text, basis
    return RATIO, "holds" if inside else "does not hold", text, basis


def where(entry: dict[str, Any]) -> str:
    edge = f" ({entry['edge']} edge)" if entry.get("edge") else ""
    return f"{entry.get('optimum')}{edge}"


# ------------------------------------------------------------------------------ study claims


def final_losses(rows: pd.DataFrame, found: Runs) -> Seeds:
    """seed -> (final val loss, diverged); a diverged seed's loss is +inf."""
    finished = rows[rows["status"].isin(COUNTED)]
    if finished.empty:
        return {}
    values = run_values(finished, found.curves, [])
    by_arm = per_seed(values[values["metric"] == "final_val_loss"]).get(("final_val_loss", -1.0))
    merged: Seeds = {}
    for seeds in (by_arm or {}).values():
        merged.update(seeds)
    return merged


def conditions(study: dict[str, Any], claim: str, base: Path, found: Runs) -> dict[str, Seeds]:
    """`lion`/`adamw` x `reference`/`variant` -> per-seed final val losses."""
    c = study["claims"].get(claim) or {}
    return {
        f"{o} {part}": final_losses(found.rows(base, (c.get(part) or {}).get(o, [])), found)
        for part in ("reference", "variant")
        for o in ("lion", "adamw")
    }


def study_claims(study: dict[str, Any], base: Path, found: Runs) -> list[Claim]:
    """The batch, schedule and betas claims, each where the study ran its conditions."""
    judges = {"batch": batch_claim, "schedule": schedule_claim, "betas": betas_claim}
    return [
        judge_claim(study, conditions(study, claim, base, found))
        for claim, judge_claim in judges.items()
        if claim in study["claims"]
    ]


# ---------------------------------------------------------------------------- tuned baselines


def tuned_baselines(roots: list[Path], runs: pd.DataFrame, name: str) -> dict[str, str]:
    """setting key -> the arm of optimizer `name` that a sweep or study tuned there: a sweep's
    best setting (its selection and confirmation runs), and a study condition's retuned one.
    The report compares every arm of such a setting with it (the recipe's default lr is then
    one more arm); the first manifest to name a setting wins."""
    found = Runs(runs, pd.DataFrame())
    out: dict[str, str] = {}
    for kind in (SWEEPS, STUDIES):
        for path in find_manifests(roots, kind):
            data = read_manifest(path) or {}
            for dirs in tuned_dirs(data, name):
                for _, r in found.rows(path.parent.parent, dirs).iterrows():
                    if isinstance(r.get("setting"), str):
                        out.setdefault(r["setting"], str(r["arm"]))
    return out


def tuned_dirs(manifest: dict[str, Any], name: str) -> list[list[str]]:
    """The run directories of each setting of optimizer `name` a manifest chose: a sweep's best
    (`optimizers`), a study condition's retuned best (`claims.<claim>.tuned`), a scaling
    point's (`points[].optimizers`), alike."""
    entries = [(manifest.get("optimizers") or {}).get(name) or {}]
    points = [p for p in manifest.get("points") or [] if isinstance(p, dict)]
    entries += [((p.get("optimizers") or {}).get(name) or {}) for p in points]
    entries += [
        ((c.get("tuned") or {}).get(name) or {}) for c in (manifest.get("claims") or {}).values()
    ]
    return [
        [*e["best"].get("run_dirs", []), *e.get("confirm_run_dirs", [])]
        for e in entries
        if e.get("best")
    ]
