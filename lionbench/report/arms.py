"""Arms: what one optimizer setting is called, and which arm is the baseline.

An *arm* is one optimizer setting within a setting (optimizer, implementation, lr, weight decay,
every other hyperparameter, `--by` keys); its seeds are pooled, nothing else is. Labels name only
what tells an arm apart from its neighbours, so the common case stays short (`lion r=3`,
`adamw lr=0.003 wd=0.1`). No optimizer is special here: the baseline is the recipe's setting of
whichever optimizer the user names (docs/design.md, "Reports").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from lionbench.optim.registry import OPTIMIZERS
from lionbench.record import digest

DEFAULT_BASELINE = "adamw"
# What a recipe's optimizer block may hold besides hyperparameters.
BLOCK_META = ("lr", "weight_decay", "ratio")


def number(value: Any) -> float | None:
    """A finite-or-not float, or None for anything that is not a number (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def same(a: float | None, b: float | None) -> bool:
    """Config values that went through YAML and arithmetic (adamw.wd * r) are compared with a
    relative tolerance; a zero weight decay needs the absolute one."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def lr_wd(block: Any) -> tuple[float, float] | None:
    """A recipe block's (lr, weight_decay), when it states both."""
    if not isinstance(block, Mapping):
        return None
    lr, wd = number(block.get("lr")), number(block.get("weight_decay"))
    return None if lr is None or wd is None else (lr, wd)


def recipe_baseline(recipe: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """The lr and weight decay the recipe gives optimizer `name`: `recipe.<name>.lr/weight_decay`,
    or for a ratio-linked optimizer (Lion) its base's through `recipe.<name>.ratio`. None when
    the recipe has no such block (a user optimizer, usually)."""
    block = recipe.get(name)
    direct = lr_wd(block)
    if direct is not None:
        return direct
    spec = OPTIMIZERS.get(name)
    if spec is None or spec.ratio_of is None or not isinstance(block, Mapping):
        return None
    base, ratio = lr_wd(recipe.get(spec.ratio_of)), number(block.get("ratio"))
    if base is None or not ratio:
        return None
    return base[0] / ratio, base[1] * ratio


def at_recipe_baseline(
    recipe: Mapping[str, Any], name: str, lr: Any, wd: Any, hyperparams: Mapping[str, Any]
) -> bool | None:
    """Whether a run is its recipe's setting of its optimizer: lr and wd as the recipe gives
    them, and any hyperparameter the recipe block states (betas) equal. None: no recipe block."""
    base = recipe_baseline(recipe, name)
    if base is None:
        return None
    if not (same(number(lr), base[0]) and same(number(wd), base[1])):
        return False
    block = recipe.get(name) or {}
    return all(
        _plain(v) == hyperparams[k]
        for k, v in block.items()
        if k not in BLOCK_META and k in hyperparams
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def ratio_consistent(r: Mapping[str, Any]) -> bool:
    """True when a ratio-linked run's lr and wd were derived from its ratio (lr = base lr / r,
    wd = base wd * r), not overridden directly: only then is `lion r=3` an honest label."""
    ratio = number(r.get("ratio"))
    base_lr, base_wd = number(r.get("ratio_base_lr")), number(r.get("ratio_base_wd"))
    if not ratio or math.isnan(ratio) or base_lr is None or base_wd is None:
        return False
    return same(number(r.get("lr")), base_lr / ratio) and same(
        number(r.get("weight_decay")), base_wd * ratio
    )


# ------------------------------------------------------------------------------------ labels


def arm_labels(runs: pd.DataFrame, by: list[str]) -> tuple[list[str], list[str | None]]:
    """(label, family) of every run. The family is the label without `r=..`: the arms of one
    ratio sweep. Two arms never share a label (a collision gets a short hash)."""
    labels: dict[Any, str] = {}
    families: dict[Any, str | None] = {}
    if "optim" not in runs:  # every config was unreadable
        return ["?"] * len(runs), [None] * len(runs)
    groups = runs[runs["setting"].notna() & runs["optim"].notna()]
    for _, g in groups.groupby(["setting", "optim"], sort=False):
        several_impls = g["impl"].nunique(dropna=True) > 1
        records = dict(zip(g.index, g.to_dict("records"), strict=True))
        hps = {i: hyperparams(r) for i, r in records.items()}
        varying = _varying(list(hps.values()))
        # `--by optim.betas` splits arms by a hyperparameter the label already shows: once
        shown = {f"optim.{k}" for k in varying} | ({"optim.impl"} if several_impls else set())
        for i, r in records.items():
            suffix = f" [{r['impl']}]" if several_impls else ""
            suffix += "".join(f" {k}={_show(hps[i].get(k))}" for k in varying)
            suffix += "".join(f" {key}={r[key]}" for key in by if key not in shown)
            if ratio_consistent(r):
                labels[i] = f"{r['optim']} r={r['ratio']:g}{suffix}"
                families[i] = f"{r['optim']}{suffix}"
            else:
                lr, wd = number(r["lr"]), number(r["weight_decay"])
                labels[i] = f"{r['optim']} lr={_g(lr)} wd={_g(wd)}{suffix}"
                families[i] = None
        _disambiguate(records, labels, by)
    return [labels.get(i, "?") for i in runs.index], [families.get(i) for i in runs.index]


def hyperparams(r: Mapping[str, Any]) -> dict[str, Any]:
    """A run's hyperparameters (the JSON the loader stored) and its user class, if any: what
    may tell two arms of one optimizer apart besides lr, wd and impl."""
    hp = json.loads(r["hyperparams"]) if isinstance(r.get("hyperparams"), str) else {}
    target = r.get("optim_target")
    return {**hp, "_target_": target if isinstance(target, str) else None}


def _varying(dicts: list[dict[str, Any]]) -> list[str]:
    """Keys whose values differ between the runs of one optimizer: they split arms."""
    keys = sorted({k for d in dicts for k in d})
    return [k for k in keys if len({json.dumps(d.get(k), default=str) for d in dicts}) > 1]


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _disambiguate(
    records: dict[Any, dict[str, Any]], labels: dict[Any, str], by: list[str]
) -> None:
    """Labels round lr to 3 digits: distinct arms that print alike get their identity's hash."""
    cols = ["optim_target", "impl", "lr", "weight_decay", "hyperparams", *by]
    ident = {
        i: digest([None if pd.isna(r.get(c)) else r.get(c) for c in cols], 4)
        for i, r in records.items()
    }
    seen: dict[str, set[str]] = {}
    for i in records:
        seen.setdefault(labels[i], set()).add(ident[i])
    for i in records:
        if len(seen[labels[i]]) > 1:
            labels[i] += f" #{ident[i]}"


# ----------------------------------------------------------------------------------- baseline


def choose_baseline(
    arms: pd.DataFrame, name: str, tuned: str | None = None
) -> tuple[str | None, str | None]:
    """(label of optimizer `name`'s baseline arm in a setting, or None; a warning, or None).

    The baseline is the setting a sweep or study tuned for that optimizer (`tuned`, chosen on
    other seeds than the ones it is judged on), else the recipe's setting of it
    (`at_recipe_baseline`), never the arm that happened to do best here: picking the winner
    would bias every comparison against it. Without a recipe block (a user optimizer) the
    optimizer's only arm is its baseline. Ties between implementations go to the registry's
    default one; any other tie is reported, not guessed."""
    if tuned is not None and (arms["arm"] == tuned).any():
        return tuned, None
    mine = arms[arms["optim"] == name]
    if mine.empty:
        return None, f"no {name} baseline run in this setting"
    flags = mine["recipe_baseline"]
    if flags.notna().any():
        candidates = mine[flags.astype("boolean").fillna(False).to_numpy(dtype=bool)]
        if candidates.empty:
            return None, (
                f"no {name} baseline run in this setting (no {name} arm at the recipe's "
                f"recipe.{name} lr/weight_decay; arms: {', '.join(mine['arm'])})"
            )
    else:
        candidates = mine
    spec = OPTIMIZERS.get(name)
    if len(candidates) > 1 and spec is not None:
        default = candidates[candidates["impl"] == next(iter(spec.impls))]
        candidates = default if len(default) == 1 else candidates
    if len(candidates) > 1:
        return None, (
            f"several {name} arms could be the baseline ({', '.join(candidates['arm'])}): "
            f"no ratio columns in this setting"
        )
    return str(candidates["arm"].iloc[0]), None
