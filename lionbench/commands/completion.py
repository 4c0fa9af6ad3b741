"""`lionbench run --help`, and TAB completion of the Hydra overrides of `run`, `sweep`, `study
claims` and `bench train`: config groups (`recipe=`), their choices (`recipe=gpt2`) and dotted
keys (`train.batch_size=`), read from the YAML files of conf/ without Hydra or torch, so that
both answer at once. Typer completes commands and options (`lionbench --install-completion`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lionbench.config import CONF_DIR, CONFIG_NAME

INTERNAL_GROUPS = ("recipe_scale", "hydra")  # composed by lionbench itself, never chosen
ROOT_CONFIG = f"{CONFIG_NAME}.yaml"


def groups(conf: Path) -> dict[str, list[str]]:
    """Config group -> its choices (the YAML files of conf/<group>/)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(conf.iterdir())
        if d.is_dir() and d.name not in INTERNAL_GROUPS
    }


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every leaf key of a YAML mapping, dotted (`train.batch_size`)."""
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    out = []
    for key, value in node.items():
        if key in ("defaults", "hydra") or not isinstance(key, str):
            continue
        out += dotted_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [
            f"{prefix}{key}"
        ]  # fmt: skip
    return out


def keys(conf: Path, choices: dict[str, list[str]]) -> list[str]:
    """Top-level keys of config.yaml and every key of each group's choices, under its group."""
    out = dotted_keys(yaml.safe_load((conf / ROOT_CONFIG).read_text()) or {})
    for group, names in choices.items():
        for name in names:
            data = yaml.safe_load((conf / group / f"{name}.yaml").read_text()) or {}
            out += [f"{group}.{k}" for k in dotted_keys(data)]
    return sorted(set(out))


def complete_override(incomplete: str) -> list[str]:
    """What a TAB offers after `lionbench run`: `group=` and `key=` that start with the word;
    after `group=`, the group's choices; nothing after `key=` (a value is the user's)."""
    conf = CONF_DIR
    choices = groups(conf)
    name, eq, _ = incomplete.partition("=")
    bare = name.lstrip("+~")
    if eq:
        return [
            f"{name}={c}" for c in choices.get(bare, []) if f"{name}={c}".startswith(incomplete)
        ]
    offered = [f"{g}=" for g in choices] + [f"{k}=" for k in keys(conf, choices)]
    sign = name[: len(name) - len(bare)]
    return [f"{sign}{o}" for o in offered if o.startswith(bare)]


GROUP_HELP = {
    "recipe": "what is trained (model, data, loss)",
    "scale": "smoke: seconds; small: a CPU comparison; full: the published size",
    "optim": "the optimizer (lr, weight decay, betas...; Lion: optim.ratio)",
    "sched": "learning-rate schedule after warmup",
    "data": "where batches come from",
    "logger": "Weights & Biases settings",
}
TOP_KEYS = ("seed", "results_dir", "device", "precision", "compile", "train", "checkpoint")


def run_help() -> str:
    """lionbench's own page for `run --help`: the groups and their choices, the main keys and
    what to type next, read from conf/ without Hydra or torch, so it prints at once."""
    conf = CONF_DIR
    choices = groups(conf)
    root = yaml.safe_load((conf / ROOT_CONFIG).read_text()) or {}
    defaults = {k: v for d in root.get("defaults", []) if isinstance(d, dict) for k, v in d.items()}
    width = max(map(len, choices))
    lines = [
        "Usage: lionbench run [-m] [--cfg job] [GROUP=CHOICE] [KEY=VALUE] ...",
        "",
        "Train one run (or, with -m, one per combination of comma-separated values).",
        "",
        "Config groups (GROUP=CHOICE; default in brackets):",
    ]
    for group, names in choices.items():
        named = ", ".join(f"[{n}]" if n == defaults.get(group) else n for n in names)
        lines.append(f"  {group:<{width}}  {named}  - {GROUP_HELP.get(group, '')}".rstrip(" -"))
    lines += ["", "Keys (KEY=VALUE; `lionbench run --cfg job` prints them all, composed):"]
    for key in TOP_KEYS:
        value = root.get(key)
        shown = ", ".join(f"{key}.{k}" for k in value) if isinstance(value, dict) else (
            f"{key}={yaml.safe_dump(value).splitlines()[0]}"
        )  # fmt: skip
        lines.append(f"  {shown}")
    lines += [
        "",
        "Examples:",
        "  lionbench run recipe=gpt2 optim=adamw scale=smoke",
        "  lionbench run -m optim=lion,adamw seed=0,1,2",
        "  lionbench run optim=lion optim.ratio=5 train.steps=500",
        "",
        "Hydra's flags and launchers: lionbench run --hydra-help; TAB completion: lionbench "
        "--install-completion.",
    ]
    return "\n".join(lines)
