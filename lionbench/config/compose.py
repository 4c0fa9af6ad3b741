"""Composing configs with Hydra's compose API (conf/ and the user's `--config-dir`s), the
resolvers conf/ uses, and the lines that name what a composition error means.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.config.args import override_key
from lionbench.errors import UserError, first_line

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CONFIG_NAME = "config"  # conf/config.yaml: the root config every run composes


def choices(group: str, extra_dirs: Sequence[Path] = ()) -> list[str]:
    """Names of the configs in a config group (the yaml files of conf/<group>/ and of the
    user's config directories)."""
    names = {p.stem for d in (CONF_DIR, *extra_dirs) for p in (d / group).glob("*.yaml")}
    return sorted(names)


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/: `lb.div` and `lb.mul` derive Lion's lr and wd."""
    from omegaconf import OmegaConf

    def div(a: Any, b: Any) -> float:
        a, b = _number("numerator", a), _number("optim.ratio", b)
        if b <= 0:
            raise UserError(f"optim.ratio must be > 0, got {b} (lr = adamw.lr / ratio)")
        return decimal_div(a, b)

    def mul(a: Any, b: Any) -> float:
        return decimal_mul(_number("value", a), _number("optim.ratio", b))

    OmegaConf.register_new_resolver("lb.div", div, replace=True)
    OmegaConf.register_new_resolver("lb.mul", mul, replace=True)


def decimal_mul(a: float, b: float) -> float:
    """a x b computed on the numbers as written (their shortest reprs), then rounded once:
    0.1 x 3 is 0.3, not 0.30000000000000004, in configs, run names, summaries and W&B."""
    return float(Decimal(repr(float(a))) * Decimal(repr(float(b))))


def decimal_div(a: float, b: float) -> float:
    """a / b like `decimal_mul`: 3e-3 / 1.5 is 0.002 (binary division can land a digit off)."""
    return float(Decimal(repr(float(a))) / Decimal(repr(float(b))))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number, got {value!r}")
    return float(value)


def compose(overrides: list[str], extra_dirs: Sequence[Path] = ()) -> Any:
    """Compose conf/config.yaml with overrides (and the user's config directories on the search
    path, as `--config-dir` gives them to Hydra's main), or raise UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            searchpath = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in extra_dirs)}]"]
            return hydra_compose(
                config_name=CONFIG_NAME, overrides=[*overrides, *(searchpath if extra_dirs else [])]
            )
    except MissingConfigException as e:
        raise UserError(_missing_config_line(e, extra_dirs)) from None
    except HydraException as e:
        raise UserError(_composition_line(e, overrides, extra_dirs)) from None
    finally:
        GlobalHydra.instance().clear()


def _missing_config_line(e: Any, extra_dirs: Sequence[Path]) -> str:
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    group, _, name = missing.rpartition("/")
    if group == "recipe_scale":
        recipe, _, scale = name.rpartition("_")
        return (
            f"recipe '{recipe}' has no scale '{scale}' (no conf/recipe_scale/{name}.yaml; "
            f"scales: {', '.join(choices('scale', extra_dirs))})"
        )
    options = getattr(e, "options", None) or (choices(group, extra_dirs) if group else [])
    if group and options:
        hint = checks.did_you_mean(name, options)
        return f"unknown {group} '{name}'{hint} (accepted: {', '.join(options)})"
    return first_line(e)


def _composition_line(e: Exception, overrides: list[str], extra_dirs: Sequence[Path]) -> str:
    text = f"{e}\n{e.__cause__ or ''}"
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in text:
        return _unknown_key_line(m.group(1), overrides, extra_dirs)
    m = re.search(r"An item is already at '([^']+)'", text)
    if m:
        key = m.group(1)
        value = next((o.split("=", 1)[1] for o in overrides if _sets_key(o, key) and "=" in o), "")
        return f"'+{key}' adds {key}, but {key} exists: set it with {key}={value or '...'}"
    m = re.search(r"Could not find '([^']+)'", text)
    if m:
        group, _, name = m.group(1).rpartition("/")
        options = choices(group, extra_dirs) if group else []
        if options:
            return f"unknown {group} '{name}' (accepted: {', '.join(options)})"
    return first_line(e)


def _unknown_key_line(key: str, overrides: list[str], extra_dirs: Sequence[Path]) -> str:
    """'train.stepz' -> unknown key, with the closest existing key when there is one."""
    base = compose_quiet([o for o in overrides if not _sets_key(o, key)], extra_dirs)
    name, hint = key_hint(base, key)
    return f"unknown config key '{name}'{hint}{NEW_KEYS if key.startswith('optim.') else ''}"


NEW_KEYS = (
    "; new keys are taken only by a _target_ or library optimizer (optim=timm|pytorch_optimizer|"
    "heavyball): +optim.KEY=..., its arguments"
)


def key_hint(base: Any, key: str) -> tuple[str, str]:
    """(the unknown part of a dotted key with its existing parent, "; did you mean ...? (keys
    under PARENT: ...)") against a composed config."""
    parts = key.split(".")
    node, depth = base, 0
    while node is not None and depth < len(parts) - 1 and hasattr(node, "keys"):
        if parts[depth] not in node:
            break
        node, depth = node[parts[depth]], depth + 1
    parent, unknown = ".".join(parts[:depth]), parts[depth]
    siblings = [str(k) for k in node] if node is not None and hasattr(node, "keys") else []
    prefix = f"{parent}." if parent else ""
    hint = checks.did_you_mean(unknown, siblings, prefix=prefix)
    accepted = f" (keys under '{parent or 'the root'}': {', '.join(siblings)})" if siblings else ""
    return f"{prefix}{unknown}", f"{hint}{accepted}"


def compose_quiet(overrides: list[str], extra_dirs: Sequence[Path] = ()) -> Any | None:
    try:
        return compose(overrides, extra_dirs)
    except UserError:
        return None


def _sets_key(override: str, key: str) -> bool:
    return override_key(override) == key
