"""`lionbench report`: run directories -> one pandas DataFrame -> tables, plots and a verdict.

Runs are compared only within a *setting*: runs whose resolved configs are equal once the
optimizer settings and the seed are removed (same recipe, scale, data, batch, steps, schedule,
device). Within a setting, an *arm* is one optimizer setting (optimizer, implementation, lr, wd,
betas), and its seeds give the mean +- std. Nothing is dropped silently: diverged, failed and
unfinished runs are listed, and unfinished or torn ones never count as completed.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import hashlib
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lionbench.errors import UserError, check_output_dir
from lionbench.track import atomic_write_text, read_metrics

# libyaml's C parser when present: reading 1,000 configs is the report's largest cost.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Keys that make an arm, not a setting: they are removed before hashing the setting.
OPTIMIZER_KEYS = ("optim", "seed", "results_dir", "logger", "sweep_name")
RECIPE_OPTIMIZER_KEYS = ("adamw", "lion")
TARGET_FRACTIONS = (0.5, 0.75, 1.0)  # default targets: AdamW's mean val loss at these points


# --------------------------------------------------------------------------------------- loading


def find_run_dirs(roots: list[Path]) -> list[Path]:
    dirs: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise UserError(f"results directory {root} does not exist")
        if (root / "config.yaml").exists():
            dirs.add(root)
        dirs.update(p.parent for p in root.rglob("config.yaml") if "wandb" not in p.parts)
    return sorted(dirs)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _setting_of(cfg: dict[str, Any]) -> str:
    """Hash of the config without optimizer settings and seed (the device is added later)."""
    rest = {k: v for k, v in cfg.items() if k not in OPTIMIZER_KEYS}
    rest["recipe"] = {
        k: v for k, v in rest.get("recipe", {}).items() if k not in RECIPE_OPTIMIZER_KEYS
    }
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]


def load_runs(roots: list[Path], by: list[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs: one row per run directory, curves: one row per val point of every run)."""
    rows, curves = [], []
    keys: set[str] = set()  # every dotted config key of the runs, for checking --by
    for d in find_run_dirs(roots):
        row: dict[str, Any] = {"run_dir": str(d)}
        try:
            cfg = yaml.load((d / "config.yaml").read_text(), Loader=YAML_LOADER)
            if not isinstance(cfg, dict) or "optim" not in cfg or "recipe" not in cfg:
                raise ValueError("not a lionbench config")
        except (OSError, ValueError, yaml.YAMLError) as e:
            rows.append({**row, "status": "corrupt", "error": f"config.yaml: {e}"})
            continue
        try:
            summary = json.loads((d / "summary.json").read_text())
            if not isinstance(summary, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            summary = {"status": "partial", "error": "no summary.json (unfinished run)"}
        except (OSError, ValueError) as e:
            summary = {"status": "corrupt", "error": f"summary.json: {e}"}
        if summary.get("status") == "running":
            summary["status"] = "partial"
        flat = _flatten(cfg)
        o = cfg["optim"]
        setting = _setting_of(cfg)
        row.update(
            {
                "recipe": cfg["recipe"].get("name"),
                "scale": cfg.get("scale"),
                "data": cfg.get("data", {}).get("source"),
                "optim": o.get("name"),
                "impl": o.get("impl"),
                "lr": o.get("lr"),
                "weight_decay": o.get("weight_decay"),
                "ratio": o.get("ratio") if o.get("name") == "lion" else None,
                "betas": str(list(o.get("betas", []))),
                "seed": cfg.get("seed"),
                "batch_size": cfg.get("train", {}).get("batch_size"),
                "planned_steps": cfg.get("train", {}).get("steps"),
                "sweep_name": cfg.get("sweep_name"),
                "setting": setting,
                "baseline_lr": cfg["recipe"].get("adamw", {}).get("lr"),
                "baseline_wd": cfg["recipe"].get("adamw", {}).get("weight_decay"),
            }
        )
        for key in (
            "status",
            "error",
            "steps",
            "diverged_at_step",
            "final_train_loss",
            "final_val_loss",
            "best_val_loss",
            "loss_floor",
            "steps_per_s",
            "examples_per_s",
            "tokens_per_s",
            "opt_step_ms",
            "peak_mem_bytes",
            "optimizer_state_bytes",
            "n_params",
            "train_time_s",
            "device",
            "device_name",
            "mfu",
        ):
            row[key] = summary.get(key)
        for key in by:
            row[key] = str(flat.get(key))
        keys.update(flat)
        rows.append(row)
        for r in read_metrics(d / "metrics.jsonl"):
            if r.get("split") == "val" and isinstance(r.get("loss"), int | float):
                curves.append(
                    {
                        "run_dir": str(d),
                        "step": r.get("step"),
                        "loss": r["loss"],
                        "time_s": r.get("time_s"),
                    }
                )
    runs = pd.DataFrame(rows)
    if runs.empty:
        raise UserError(
            f"no run directories under {', '.join(map(str, roots))} "
            f"(expected <results_dir>/<recipe>/<run>/config.yaml)"
        )
    _check_by(by, keys)
    for col in (
        "final_val_loss",
        "best_val_loss",
        "loss_floor",
        "steps_per_s",
        "examples_per_s",
        "opt_step_ms",
        "peak_mem_bytes",
        "optimizer_state_bytes",
        "lr",
        "weight_decay",
        "ratio",
        "train_time_s",
    ):
        if col in runs:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs["setting"] = _with_device(runs)
    runs["arm"] = _arm_labels(runs, by)
    curves_df = pd.DataFrame(curves, columns=["run_dir", "step", "loss", "time_s"])
    return runs, curves_df


def _check_by(by: list[str], keys: set[str]) -> None:
    """A `--by` key that no run's config has would split nothing: it is a typo."""
    for key in by:
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(
                f"unknown --by key '{key}'{hint} (accepted: a dotted config key of the runs, "
                f"e.g. optim.betas, train.batch_size)"
            )


def _with_device(runs: pd.DataFrame) -> pd.Series:
    """A CPU result is not a GPU result: the device splits settings. An unfinished run (no
    summary, so no device) joins its config's setting when that setting ran on one device."""
    if "setting" not in runs:
        return pd.Series([None] * len(runs), index=runs.index)
    devices = runs.dropna(subset=["device"]).groupby("setting")["device"].unique()
    keys = []
    for _, r in runs.iterrows():
        if not isinstance(r.get("setting"), str):
            keys.append(None)
            continue
        device = r.get("device")
        if not isinstance(device, str):
            known = devices.get(r["setting"], [])
            device = known[0] if len(known) == 1 else "unknown"
        keys.append(f"{r['setting']}-{device}")
    return pd.Series(keys, index=runs.index)


def _arm_labels(runs: pd.DataFrame, by: list[str]) -> list[str]:
    labels = []
    impls = runs.groupby(["setting", "optim"])["impl"].nunique(dropna=True)
    for _, r in runs.iterrows():
        if not isinstance(r.get("optim"), str):
            labels.append("?")
            continue
        if r["optim"] == "lion" and _ratio_consistent(r):
            label = f"lion r={r['ratio']:g}"
        else:
            label = f"{r['optim']} lr={r['lr']:.3g} wd={r['weight_decay']:.3g}"
        if impls.get((r["setting"], r["optim"]), 1) > 1:
            label += f" [{r['impl']}]"
        for key in by:
            label += f" {key}={r[key]}"
        labels.append(label)
    return labels


def _ratio_consistent(r: pd.Series) -> bool:
    """True when Lion's lr was derived from the ratio (not overridden directly)."""
    ratio, lr, wd = r.get("ratio"), r.get("lr"), r.get("weight_decay")
    if ratio is None or pd.isna(ratio) or r.get("baseline_lr") is None:
        return False
    return math.isclose(lr, r["baseline_lr"] / ratio, rel_tol=1e-9) and math.isclose(
        wd, (r.get("baseline_wd") or 0.0) * ratio, rel_tol=1e-9, abs_tol=1e-15
    )


# ------------------------------------------------------------------------------------- analysing


def _mean_std(values: pd.Series) -> tuple[float, float, int]:
    v = values.dropna()
    v = v[np.isfinite(v)]
    if v.empty:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}g}" + (f" ± {std:.2g}" if not math.isnan(std) else "")


def _steps_to(curve: pd.DataFrame, target: float) -> tuple[float, float]:
    """First eval (step, time) at or below the target; (nan, nan) when never reached."""
    hit = curve[curve["loss"] <= target]
    if hit.empty:
        return math.nan, math.nan
    first = hit.sort_values("step").iloc[0]
    return float(first["step"]), float(first["time_s"])


@dataclass
class Setting:
    """All the tables of one comparable setting."""

    key: str
    label: str
    runs: pd.DataFrame
    optimizers: pd.DataFrame = field(default_factory=pd.DataFrame)
    targets: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)


def analyse(runs: pd.DataFrame, curves: pd.DataFrame, targets: list[float]) -> list[Setting]:
    settings = []
    done = runs[runs["status"] == "completed"]
    for key, group in runs[runs["setting"].notna()].groupby("setting", sort=True):
        first = group.iloc[0]
        label = (
            f"{first['recipe']} scale={first['scale']} data={first['data']} "
            f"batch={first['batch_size']} steps={first['planned_steps']} "
            f"device={first['device']} [{key}]"
        )
        s = Setting(key, label, group)
        completed = done[done["setting"] == key]
        s.optimizers = _optimizer_table(group, completed)
        s.targets = _target_table(completed, curves, targets)
        s.sweep = _sweep_table(completed)
        s.claims = _claims(s, completed)
        s.warnings = _pairing_warnings(group, completed)
        settings.append(s)
    return settings


def _optimizer_table(group: pd.DataFrame, completed: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for arm, runs in group.groupby("arm", sort=False):
        ok = completed[completed["arm"] == arm]
        fv, fs, n = _mean_std(ok["final_val_loss"])
        bv, bs, _ = _mean_std(ok["best_val_loss"])
        floor = ok["loss_floor"].dropna()
        rows.append(
            {
                "arm": arm,
                "optim": runs["optim"].iloc[0],
                "impl": runs["impl"].iloc[0],
                "lr": runs["lr"].iloc[0],
                "weight_decay": runs["weight_decay"].iloc[0],
                "n": n,
                "seeds": ",".join(str(x) for x in sorted(ok["seed"].tolist())),
                "final_val_loss": fv,
                "final_val_loss_std": fs,
                "best_val_loss": bv,
                "best_val_loss_std": bs,
                "gap_to_floor": fv - float(floor.mean()) if not floor.empty else math.nan,
                "steps_per_s": ok["steps_per_s"].mean(),
                "examples_per_s": ok["examples_per_s"].mean(),
                "opt_step_ms": ok["opt_step_ms"].median(),
                "peak_mem_mb": ok["peak_mem_bytes"].mean() / 1e6,
                "optimizer_state_mb": ok["optimizer_state_bytes"].mean() / 1e6,
                "diverged": int((runs["status"] == "diverged").sum()),
                "failed": int(
                    runs["status"].isin(["failed", "partial", "corrupt", "interrupted"]).sum()
                ),
            }
        )
    table = pd.DataFrame(rows)
    base = _baseline(table)
    if base is not None:
        for col in (
            "steps_per_s",
            "examples_per_s",
            "opt_step_ms",
            "optimizer_state_mb",
            "peak_mem_mb",
        ):
            table[f"{col}_vs_adamw"] = table[col] / base[col]
    return table


def _baseline(table: pd.DataFrame) -> pd.Series | None:
    """The AdamW arm to compare against: the one with the lowest mean final val loss."""
    adamw = table[(table["optim"] == "adamw") & (table["n"] > 0)]
    if adamw.empty:
        return None
    return adamw.sort_values("final_val_loss").iloc[0]


def default_targets(completed: pd.DataFrame, curves: pd.DataFrame) -> list[float]:
    """Losses the AdamW baseline reaches in every seed: the worst seed's val loss at 50%, 75%
    and 100% of training."""
    adamw = completed[completed["optim"] == "adamw"]
    if adamw.empty:
        return []
    best_arm = adamw.groupby("arm")["final_val_loss"].mean().idxmin()
    c = curves[curves["run_dir"].isin(adamw[adamw["arm"] == best_arm]["run_dir"])]
    mean = c.groupby("step")["loss"].max().sort_index()
    mean = mean[mean.index > 0]
    if mean.empty:
        return []
    picks = sorted(
        {mean.iloc[max(0, math.ceil(f * len(mean)) - 1)] for f in TARGET_FRACTIONS}, reverse=True
    )
    return [float(p) for p in picks]


def _target_table(
    completed: pd.DataFrame, curves: pd.DataFrame, targets: list[float]
) -> pd.DataFrame:
    targets = list(targets) or default_targets(completed, curves)
    rows = []
    by_run = {k: g for k, g in curves.groupby("run_dir")}
    for target in targets:
        for arm, runs in completed.groupby("arm", sort=False):
            hits = [_steps_to(by_run.get(d, curves.iloc[:0]), target) for d in runs["run_dir"]]
            steps = [h[0] for h in hits if not math.isnan(h[0])]
            times = [h[1] for h in hits if not math.isnan(h[1])]
            rows.append(
                {
                    "target": target,
                    "arm": arm,
                    "optim": runs["optim"].iloc[0],
                    "reached": f"{len(steps)}/{len(hits)}",
                    "all_reached": len(steps) == len(hits),
                    "steps_to_target": float(np.mean(steps)) if steps else math.nan,
                    "steps_to_target_std": float(np.std(steps, ddof=1))
                    if len(steps) > 1
                    else math.nan,
                    "time_to_target_s": float(np.mean(times)) if times else math.nan,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    ratios = []
    for _, r in table.iterrows():
        base = table[
            (table["target"] == r["target"]) & (table["optim"] == "adamw") & table["all_reached"]
        ]
        ratios.append(
            r["steps_to_target"] / base["steps_to_target"].min()
            if not base.empty and r["all_reached"]
            else math.nan
        )
    table["steps_vs_adamw"] = ratios
    return table


def _sweep_table(completed: pd.DataFrame) -> pd.DataFrame:
    lion = completed[completed["arm"].str.startswith("lion r=")]
    rows = []
    for ratio, runs in lion.groupby("ratio"):
        mean, std, n = _mean_std(runs["final_val_loss"])
        rows.append(
            {
                "ratio": ratio,
                "lr": runs["lr"].iloc[0],
                "weight_decay": runs["weight_decay"].iloc[0],
                "n": n,
                "final_val_loss": mean,
                "final_val_loss_std": std,
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["best"] = table["final_val_loss"] == table["final_val_loss"].min()
    return table


def _claims(s: Setting, completed: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims (REFERENCES.md) that these runs can speak to."""
    rows = []
    opt = s.optimizers
    lion = opt[(opt["optim"] == "lion") & (opt["n"] > 0)] if not opt.empty else opt
    base = _baseline(opt) if not opt.empty else None

    def add(claim: str, verdict: str, evidence: str) -> None:
        rows.append({"claim": claim, "verdict": verdict, "evidence": evidence})

    if base is None or lion.empty:
        add("Lion vs AdamW", "not enough data", "needs completed Lion and AdamW runs")
        return pd.DataFrame(rows)
    ratio = lion["optimizer_state_mb"].mean() / base["optimizer_state_mb"]
    add(
        "optimizer state is half of AdamW's",
        "holds" if 0.45 <= ratio <= 0.55 else "does not hold",
        f"Lion {lion['optimizer_state_mb'].mean():.4g} MB vs AdamW "
        f"{base['optimizer_state_mb']:.4g} MB: ratio {ratio:.3f}",
    )

    lion_sps = completed[completed["optim"] == "lion"]["steps_per_s"].dropna()
    adamw_sps = completed[completed["arm"] == base["arm"]]["steps_per_s"].dropna()
    if len(lion_sps) >= 2 and len(adamw_sps) >= 2:
        diff = lion_sps.mean() - adamw_sps.mean()
        se = math.sqrt(lion_sps.var() / len(lion_sps) + adamw_sps.var() / len(adamw_sps))
        verdict = (
            "holds"
            if diff > 2 * se
            else "does not hold"
            if diff < -2 * se
            else "inconclusive (within noise)"
        )
    else:
        verdict, se = "not enough data (needs 2+ runs of each)", math.nan
    add(
        "steps/s higher than AdamW (paper: 2-15%)",
        verdict,
        f"Lion {lion_sps.mean():.4g} vs AdamW {adamw_sps.mean():.4g} steps/s "
        f"({(lion_sps.mean() / adamw_sps.mean() - 1) * 100:+.1f}%)"
        + (f", 2 SE = {2 * se:.2g}" if not math.isnan(se) else ""),
    )

    sweep = s.sweep
    if len(sweep) >= 2:
        best = sweep.sort_values("final_val_loss").iloc[0]
        edge = best["ratio"] in (sweep["ratio"].min(), sweep["ratio"].max())
        verdict = "holds" if 3 <= best["ratio"] <= 10 else "does not hold"
        add(
            "Lion's best lr is 3-10x smaller than AdamW's",
            verdict,
            f"best ratio r = {best['ratio']:g} of {', '.join(f'{r:g}' for r in sweep['ratio'])} "
            f"(val loss {best['final_val_loss']:.4g})"
            + ("; at the edge of the tested range" if edge else ""),
        )
    else:
        add(
            "Lion's best lr is 3-10x smaller than AdamW's",
            "not enough data",
            "needs Lion runs at 2+ ratios",
        )

    t = s.targets
    if not t.empty:
        tightest = t["target"].min()
        at = t[t["target"] == tightest]
        adamw_row = at[at["arm"] == base["arm"]]
        lion_rows = at[at["optim"] == "lion"]
        best_lion = (
            lion_rows.sort_values("steps_to_target").iloc[0] if not lion_rows.empty else None
        )
        if adamw_row.empty or best_lion is None or not bool(adamw_row["all_reached"].iloc[0]):
            add(
                "Lion needs fewer steps to the target",
                "not enough data",
                f"AdamW did not reach {tightest:.4g} in every seed",
            )
        elif math.isnan(best_lion["steps_to_target"]) or not best_lion["all_reached"]:
            add(
                "Lion needs fewer steps to the target",
                "does not hold",
                f"no Lion setting reached {tightest:.4g} in every seed",
            )
        else:
            a, b = adamw_row["steps_to_target"].iloc[0], best_lion["steps_to_target"]
            add(
                "Lion needs fewer steps to the target",
                "holds" if b < a else "does not hold",
                f"target {tightest:.4g}: best Lion ({best_lion['arm']}) {b:.0f} steps vs "
                f"AdamW {a:.0f} ({b / a:.2f}x)",
            )
    return pd.DataFrame(rows)


def _pairing_warnings(group: pd.DataFrame, completed: pd.DataFrame) -> list[str]:
    warnings = []
    seed_sets = {arm: frozenset(r["seed"]) for arm, r in completed.groupby("arm")}
    if len(set(seed_sets.values())) > 1:
        detail = "; ".join(f"{a}: {sorted(s)}" for a, s in seed_sets.items())
        warnings.append(f"arms ran different seed sets ({detail}); means use each arm's own seeds")
    if not (group["optim"] == "adamw").any():
        warnings.append("no AdamW run in this setting: nothing to compare Lion against")
    if not (group["optim"] == "lion").any():
        warnings.append("no Lion run in this setting")
    return warnings


# --------------------------------------------------------------------------------------- plotting


def make_plots(s: Setting, curves: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = s.runs[s.runs["status"] == "completed"]
    if done.empty:
        return
    c = curves[curves["run_dir"].isin(done["run_dir"])].merge(
        done[["run_dir", "arm", "optim"]], on="run_dir"
    )
    floor = done["loss_floor"].dropna()
    for axis, xlabel in (("step", "step"), ("time_s", "training time (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for arm, g in c.groupby("arm", sort=False):
            if axis == "step":
                stats = g.groupby("step")["loss"].agg(["mean", "min", "max"])
                x = stats.index.to_numpy()
            else:
                stats = g.groupby("step").agg(
                    mean=("loss", "mean"),
                    min=("loss", "min"),
                    max=("loss", "max"),
                    x=("time_s", "mean"),
                )
                x = stats["x"].to_numpy()
            style = "--" if g["optim"].iloc[0] == "adamw" else "-"
            (line,) = ax.plot(x, stats["mean"], style, label=f"{arm} (n={g['run_dir'].nunique()})")
            ax.fill_between(x, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        if not floor.empty:
            ax.axhline(floor.mean(), color="gray", lw=0.8, ls=":", label="loss floor")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val loss")
        ax.set_title(f"val loss by {xlabel}: mean, min-max over seeds\n{s.label}", fontsize=9)
        _zoom(ax, c["loss"], floor)
        name = f"curves_{'step' if axis == 'step' else 'time'}_{s.key}.png"
        _save(fig, out / name, s, f"val loss by {xlabel}")
    if len(s.sweep) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4))
        sw = s.sweep.sort_values("ratio")
        ax.errorbar(
            sw["ratio"],
            sw["final_val_loss"],
            yerr=sw["final_val_loss_std"].fillna(0),
            marker="o",
            capsize=3,
            label="Lion (mean ± std over seeds)",
        )
        base = _baseline(s.optimizers)
        if base is not None:
            lo = base["final_val_loss"] - (
                0 if math.isnan(base["final_val_loss_std"]) else base["final_val_loss_std"]
            )
            hi = 2 * base["final_val_loss"] - lo
            ax.axhspan(lo, hi, color="tab:orange", alpha=0.2)
            ax.axhline(
                base["final_val_loss"],
                color="tab:orange",
                ls="--",
                label=f"{base['arm']} (mean ± std)",
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(sw["ratio"], [f"{r:g}" for r in sw["ratio"]])
        ax.set_xlabel("ratio r  (Lion lr = AdamW lr / r, wd = AdamW wd × r)")
        ax.set_ylabel("final val loss")
        ax.set_title(f"Lion's lr/wd ratio\n{s.label}", fontsize=9)
        _save(fig, out / f"ratio_sweep_{s.key}.png", s, "ratio sweep")


def _save(fig: Any, path: Path, s: Setting, title: str) -> None:
    import matplotlib.pyplot as plt

    ax = fig.axes[0]
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    s.plots[title] = path


def _zoom(ax: Any, losses: pd.Series, floor: pd.Series) -> None:
    """Keep the interesting range: from the floor (or min) to a little above the median start."""
    lo = min(losses.min(), floor.mean()) if not floor.empty else losses.min()
    hi = losses.quantile(0.98)
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))


# -------------------------------------------------------------------------------------- rendering

LOSS_COLUMNS = {
    "arm": "optimizer",
    "n": "n",
    "seeds": "seeds",
    "final_val_loss": "final val loss",
    "best_val_loss": "best val loss",
    "gap_to_floor": "gap to floor",
    "diverged": "diverged",
    "failed": "failed",
}
SPEED_COLUMNS = {
    "arm": "optimizer",
    "steps_per_s": "steps/s",
    "steps_per_s_vs_adamw": "vs AdamW",
    "examples_per_s": "examples/s",
    "opt_step_ms": "opt step ms",
    "opt_step_ms_vs_adamw": "vs AdamW ",
    "peak_mem_mb": "peak mem MB",
    "optimizer_state_mb": "opt state MB",
    "optimizer_state_mb_vs_adamw": "vs AdamW  ",
}


def display_tables(s: Setting) -> dict[str, pd.DataFrame]:
    """Human-readable versions of a setting's tables (strings, mean ± std)."""
    out: dict[str, pd.DataFrame] = {}
    if not s.optimizers.empty:
        t = s.optimizers.copy()
        t["final_val_loss"] = [
            _pm(m, sd) for m, sd in zip(t["final_val_loss"], t["final_val_loss_std"], strict=True)
        ]
        t["best_val_loss"] = [
            _pm(m, sd) for m, sd in zip(t["best_val_loss"], t["best_val_loss_std"], strict=True)
        ]
        for title, columns in (
            ("Lion vs AdamW: val loss (mean ± std over seeds)", LOSS_COLUMNS),
            ("Lion vs AdamW: speed and memory", SPEED_COLUMNS),
        ):
            cols = [c for c in columns if c in t]
            out[title] = _fmt(t[cols].rename(columns=columns))
    if not s.targets.empty:
        t = s.targets.copy()
        t["steps_to_target"] = [
            _pm(m, sd, 5) if not math.isnan(m) else "not reached"
            for m, sd in zip(t["steps_to_target"], t["steps_to_target_std"], strict=True)
        ]
        cols = ["target", "arm", "reached", "steps_to_target", "time_to_target_s", "steps_vs_adamw"]
        out["Steps and time to target (val loss)"] = _fmt(
            t[cols].rename(
                columns={
                    "arm": "optimizer",
                    "steps_to_target": "steps to target",
                    "time_to_target_s": "time to target (s)",
                    "steps_vs_adamw": "steps vs AdamW",
                }
            )
        )
    if not s.sweep.empty:
        t = s.sweep.copy()
        t["final_val_loss"] = [
            _pm(m, sd) for m, sd in zip(t["final_val_loss"], t["final_val_loss_std"], strict=True)
        ]
        t["best"] = ["best" if b else "" for b in t["best"]]
        out["Lion ratio sweep"] = _fmt(
            t[["ratio", "lr", "weight_decay", "n", "final_val_loss", "best"]]
        )
    if not s.claims.empty:
        out["Claims"] = s.claims
    return out


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    return df.map(cell) if hasattr(df, "map") else df.applymap(cell)


def problem_table(runs: pd.DataFrame) -> pd.DataFrame:
    bad = runs[runs["status"] != "completed"]
    cols = ["status", "recipe", "arm", "seed", "diverged_at_step", "error", "run_dir"]
    return _fmt(bad[[c for c in cols if c in bad]].astype(object).fillna("-"))


def markdown_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def render(settings: list[Setting], problems: pd.DataFrame, runs: pd.DataFrame, out: Path) -> None:
    """report.md, self-contained report.html, CSV and Parquet of every table."""
    md = [
        "# lionbench report",
        "",
        f"{len(runs)} run directories: "
        + ", ".join(f"{n} {k}" for k, n in runs["status"].value_counts().items()),
        "",
    ]
    body = [f"<h1>lionbench report</h1><p>{html.escape(md[2])}</p>"]
    for s in settings:
        md += [f"## {s.label}", ""]
        body.append(f"<h2>{html.escape(s.label)}</h2>")
        for w in s.warnings:
            md += [f"> warning: {w}", ""]
            body.append(f"<p class=warn>warning: {html.escape(w)}</p>")
        compared = "Runs compared: " + ", ".join(
            f"{arm} (seeds {g})"
            for arm, g in zip(
                s.optimizers.get("arm", []), s.optimizers.get("seeds", []), strict=True
            )
        )
        md += [compared, ""]
        body.append(f"<p>{html.escape(compared)}</p>")
        for title, table in display_tables(s).items():
            md += [f"### {title}", "", markdown_table(table), ""]
            body.append(f"<h3>{html.escape(title)}</h3>" + table.to_html(index=False, border=0))
        for title, path in s.plots.items():
            md += [f"![{title}]({path.name})", ""]
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(
                f"<figure><img alt='{html.escape(title)}' "
                f"src='data:image/png;base64,{data}'><figcaption>{html.escape(title)}"
                f"</figcaption></figure>"
            )
    md += ["## Diverged, failed and unfinished runs", ""]
    body.append("<h2>Diverged, failed and unfinished runs</h2>")
    if problems.empty:
        md += ["None.", ""]
        body.append("<p>None.</p>")
    else:
        md += [markdown_table(problems), ""]
        body.append(problems.to_html(index=False, border=0))
    atomic_write_text(out / "report.md", "\n".join(md))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "th{background:#f3f3f3}.warn{color:#a60}img{max-width:100%}"
        "figure{display:inline-block;margin:0.5em}"
    )
    atomic_write_text(
        out / "report.html",
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>lionbench report</title><style>{style}</style></head><body>"
        + "\n".join(body)
        + "</body></html>",
    )
    tables = {"runs": runs, "problems": problems}
    for s in settings:
        for name, df in (
            ("optimizers", s.optimizers),
            ("targets", s.targets),
            ("ratio_sweep", s.sweep),
            ("claims", s.claims),
        ):
            if not df.empty:
                tables[f"{name}_{s.key}"] = df
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
        with contextlib.suppress(ImportError):  # Parquet needs pyarrow
            df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(
                out / f"{name}.parquet", index=False
            )


def print_console(settings: list[Setting], problems: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for s in settings:
        console.rule(s.label)
        for w in s.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        for title, df in display_tables(s).items():
            table = Table(title=title, title_justify="left")
            for col in df.columns:
                table.add_column(str(col))
            for _, r in df.iterrows():
                table.add_row(*(str(v) for v in r))
            console.print(table)
    if not problems.empty:
        table = Table(title="Diverged, failed and unfinished runs", title_justify="left")
        for col in problems.columns:
            table.add_column(str(col))
        for _, r in problems.iterrows():
            table.add_row(*(str(v) for v in r))
        console.print(table)


def check_options(roots: list[Path], out: Path | None, targets: list[float]) -> None:
    """Reject bad paths and targets before reading a single run (`--by` keys are checked
    against the run configs in `load_runs`)."""
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


def report(
    roots: list[Path], out: Path | None, targets: list[float], by: list[str], quiet: bool = False
) -> list[Setting]:
    check_options(roots, out, targets)
    runs, curves = load_runs(roots, by)
    settings = analyse(runs, curves, targets)
    problems = problem_table(runs)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for s in settings:
            make_plots(s, curves, out)
        render(settings, problems, runs, out)
    if not quiet:
        print_console(settings, problems)
    return settings
