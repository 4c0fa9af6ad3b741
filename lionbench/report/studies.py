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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lionbench.report.analyse import COUNTED, default_targets, optimizer_table
from lionbench.report.claims import (
    CLAIM_COLUMNS,
    RATIO,
    batch_claim,
    betas_claim,
    evidence,
    schedule_claim,
    speed_claim,
    state_claim,
    steps_claim,
)
from lionbench.report.verdicts import Seeds, compare_arms, describe, per_seed, run_values
from lionbench.run.rundir import STUDIES, SWEEPS, find_manifests

RATIO_LOW, RATIO_HIGH = 3.0, 10.0


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
        self.index = {
            Path(d).resolve(): i for i, d in zip(runs.index, runs["run_dir"], strict=True)
        }

    def rows(self, base: Path, dirs: list[str]) -> pd.DataFrame:
        idx = [self.index[p] for d in dirs if (p := (base / d).resolve()) in self.index]
        return self.runs.loc[idx]


def read_studies(roots: list[Path], runs: pd.DataFrame, curves: pd.DataFrame) -> list[Study]:
    """One `Study` per sweep manifest under the roots, with its study's claims when one names
    the sweep; unreadable manifests are said, not skipped."""
    found = Runs(runs, curves)
    extra = {}
    for path in find_manifests(roots, STUDIES):
        data = read_manifest(path)
        if data is not None:
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
    """The confirmed headline and the claims of one sweep (and its study)."""
    opt = sweep["optimizers"]
    confirm = {o: found.rows(base, opt[o].get("confirm_run_dirs", [])) for o in ("lion", "adamw")}
    s = Study(str(sweep["name"]), "")
    if any(rows.empty for rows in confirm.values()):
        s.headline = (
            f"sweep {sweep['name']}: no confirmation runs of both optimizers' best settings, so "
            f"no confirmed verdict (the selection runs chose the settings: their comparison is "
            f"biased towards the winner)"
        )
        return s
    rows = pd.concat(confirm.values())
    finished = rows[rows["status"].isin(COUNTED)]
    lion, adamw = (str(confirm[o]["arm"].iloc[0]) for o in ("lion", "adamw"))
    targets = default_targets(finished[finished["status"] == "completed"], found.curves, adamw)
    values = run_values(finished, found.curves, targets[-1:])
    s.comparisons = compare_arms(values, adamw, [lion])
    s.headline = headline(sweep, lion, adamw, s.comparisons)
    table = optimizer_table(rows, rows[rows["status"] == "completed"])
    claims = [
        state_claim(table[table["optim"] == "lion"], table[table["optim"] == "adamw"].iloc[0]),
        speed_claim(values, adamw, [lion]),
        ratio_claim(sweep, base, found),
        steps_claim(values, adamw, [lion]),
    ]
    if study is not None:
        claims += study_claims(study, base, found)
    s.claims = pd.DataFrame([c for c in claims if c is not None], columns=CLAIM_COLUMNS)
    return s


def headline(sweep: dict[str, Any], lion: str, adamw: str, comps: pd.DataFrame) -> str:
    """`sweep X (gpt2 small): settings chosen on seeds 0,1,2; on 6 fresh seeds, lion r=2 vs
    adamw lr=0.003 (each optimizer's best): final val loss ... (better); steps to ...`."""
    said = "; ".join(
        describe(r) for _, r in comps.iterrows() if r["metric"] in ("final_val_loss",
                                                                    "steps_to_target")
    )  # fmt: skip
    seeds = ",".join(map(str, sweep["confirm_seeds"]))
    chosen = ",".join(map(str, sweep["selection_seeds"]))
    return (
        f"sweep {sweep['name']} ({sweep['recipe']} {sweep['scale']}): settings chosen on seeds "
        f"{chosen}; on {len(sweep['confirm_seeds'])} fresh seeds ({seeds}), {lion} vs {adamw} "
        f"(each optimizer's best): {said}"
    )


# ------------------------------------------------------------------------------------ ratio


def ratio_claim(sweep: dict[str, Any], base: Path, found: Runs) -> tuple[str, str, str]:
    """Lion's best lr against AdamW's *best* lr (and the recipe's): r_eff = best AdamW lr / best
    Lion lr. Decided only when both optima are interior and the best Lion setting is
    significantly better (paired over the selection seeds, Holm) than every Lion setting whose
    r_eff lies on the other side of [3, 10]."""
    lion, adamw = sweep["optimizers"]["lion"], sweep["optimizers"]["adamw"]
    if lion.get("best") is None or adamw.get("best") is None:
        return RATIO, "not enough data", "an optimizer has no setting without a diverged seed"
    best_adamw_lr = float(adamw["best"]["lr"])
    base_lr = float(sweep["baseline"]["adamw_lr"])
    scale = best_adamw_lr / base_lr  # r_eff = ratio x the best AdamW multiplier
    r_best = float(lion["best"]["ratio"]) * scale
    arms: dict[float, pd.DataFrame] = {}
    for entry in lion["scores"]:
        arms[float(entry["ratio"])] = found.rows(base, entry["run_dirs"])
    rows = pd.concat(arms.values()) if arms else pd.DataFrame()
    finished = rows[rows["status"].isin(COUNTED)] if not rows.empty else rows
    text = (
        f"best Lion lr {lion['best']['lr']:.3g} (r = {lion['best']['ratio']:g} from the "
        f"recipe's AdamW lr {base_lr:.3g}) is {r_best:.3g}x smaller than AdamW's best lr "
        f"{best_adamw_lr:.3g}; optima: Lion {where(lion)}, AdamW {where(adamw)}"
    )
    if finished.empty:
        return RATIO, "not enough data", text + "; no selection runs found"
    inside = RATIO_LOW <= r_best <= RATIO_HIGH
    best_arm = str(arms[float(lion["best"]["ratio"])]["arm"].iloc[0])
    rivals = [
        str(rows_r["arm"].iloc[0])
        for r, rows_r in arms.items()
        if not rows_r.empty and (RATIO_LOW <= r * scale <= RATIO_HIGH) != inside
    ]
    values = run_values(finished, found.curves, [])
    comps = compare_arms(values[values["metric"] == "final_val_loss"], best_arm, rivals)
    if comps.empty:
        return RATIO, "not enough data", text + "; no tested ratio on the other side of [3, 10]"
    text += "; the other side of [3, 10] vs the best: " + evidence(comps)
    if lion.get("optimum") != "interior" or adamw.get("optimum") != "interior":
        return RATIO, "not decided (an optimum is at its grid's bound)", text
    decided = (comps["verdict"] == "worse").all()
    if not decided:
        return RATIO, "no significant difference", text
    return RATIO, "holds" if inside else "does not hold", text


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


def study_claims(study: dict[str, Any], base: Path, found: Runs) -> list[tuple[str, str, str]]:
    """The batch, schedule and betas claims, each where the study ran its conditions."""
    judges = {"batch": batch_claim, "schedule": schedule_claim, "betas": betas_claim}
    return [
        judge_claim(study, conditions(study, claim, base, found))
        for claim, judge_claim in judges.items()
        if claim in study["claims"]
    ]
