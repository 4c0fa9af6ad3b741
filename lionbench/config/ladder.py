"""Model sizes: `recipe.size=NAME` picks a rung of the recipe's ladder (`recipe.sizes` in
conf/recipe/<name>.yaml), whose keys replace those of `recipe.model`. The ladder lives in the
config tree, next to the model it resizes, so a user's recipe adds one with YAML alone; the
run's config.yaml records the model it trained, and its identity leaves the name out
(record.DERIVED_KEYS), so a size and the same shape spelled out are one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.config.args import override_key
from lionbench.errors import UserError


def sizes_of(cfg: Any) -> dict[str, dict[str, Any]]:
    """The recipe's ladder, name -> the recipe.model keys it sets, in the YAML's order."""
    from omegaconf import OmegaConf

    sizes = cfg.recipe.get("sizes")
    if sizes is None:
        return {}
    plain = OmegaConf.to_container(sizes, resolve=True) if OmegaConf.is_config(sizes) else sizes
    if not isinstance(plain, dict) or not all(isinstance(v, dict | None) for v in plain.values()):
        raise UserError(
            f"recipe.sizes of recipe {cfg.recipe.name} must map each size name to recipe.model "
            f"keys (e.g. l2w32: {{n_layer: 2, n_embd: 32}})"
        )
    return {str(k): dict(v or {}) for k, v in plain.items()}


def sized_config(overrides: Sequence[str], size: str, extra_dirs: Sequence[Path] = ()) -> Any:
    """The config of `overrides` at `size` of the ladder, checked (a study's points, probes and
    `lionbench list` compose their sizes alike)."""
    from lionbench import config

    cfg = config.compose([*overrides, f"recipe.size={size}"], extra_dirs)
    apply_size(cfg, overrides)
    config.validate(cfg, extra_dirs)
    return cfg


def apply_size(cfg: Any, overrides: Sequence[str] = ()) -> None:
    """Set recipe.model's keys from the named size (nothing when recipe.size is null). A size
    key also set by an override would be silently overwritten: refused instead."""
    from omegaconf import open_dict

    size = cfg.recipe.get("size")
    if size is None:
        return
    ladder = sizes_of(cfg)
    if not ladder:
        raise UserError(
            f"recipe {cfg.recipe.name} has no size ladder (recipe.sizes); set recipe.model.* "
            f"instead of recipe.size"
        )
    checks.choice(str(size), "recipe.size", ladder)
    for key, value in ladder[str(size)].items():
        if key not in cfg.recipe.model:
            raise UserError(
                f"recipe.sizes.{size}.{key}: not a key of recipe.model (accepted: "
                f"{', '.join(map(str, cfg.recipe.model))})"
            )
        for o in overrides:
            if override_key(o) == f"recipe.model.{key}":
                raise UserError(
                    f"'{o}': recipe.size={size} sets recipe.model.{key} (drop one of them)"
                )
        with open_dict(cfg):
            cfg.recipe.model[key] = value
