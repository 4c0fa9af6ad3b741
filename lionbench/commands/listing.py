"""`lionbench list`: what a run can be made of, read from conf/ and the optimizer registry."""

from __future__ import annotations

from pathlib import Path

LADDER_SCALE = "small"  # the scale whose vocabulary, context and image size the counts use


def print_choices() -> None:
    """The recipes (with their data sources and scales), optimizers and implementations,
    scales, data sources and schedules, as one table."""
    import yaml
    from rich.table import Table

    from lionbench.config import CONF_DIR, choices
    from lionbench.console import make_console
    from lionbench.optim.registry import OPTIMIZERS

    table = Table(show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("choices (override as key=value)")
    recipes = []
    for name in choices("recipe"):
        spec = yaml.safe_load((CONF_DIR / "recipe" / f"{name}.yaml").read_text())
        scales = [
            s for s in choices("scale") if (CONF_DIR / "recipe_scale" / f"{name}_{s}.yaml").exists()
        ]
        recipes.append(
            f"{name}  (data: {', '.join(spec.get('data_sources', []))}; "
            f"scales: {', '.join(scales)})"
        )
    table.add_row("recipe", "\n".join(recipes))
    table.add_row(
        f"recipe.size\n(parameters at\nscale={LADDER_SCALE})",
        "\n".join(ladder_line(name) for name in choices("recipe")),
    )
    table.add_row(
        "optim",
        "\n".join(
            f"{name}  (optim.impl: {', '.join(spec.impls)}): {spec.description}"
            for name, spec in OPTIMIZERS.items()
        )
        + "\nany optimizer class: a YAML with _target_: module.Class in --config-dir",
    )
    table.add_row("scale", ", ".join(choices("scale")))
    table.add_row("data", ", ".join(choices("data")))
    table.add_row("sched", ", ".join(choices("sched")))
    table.add_row("logger.wandb.mode", "auto, online, offline, disabled")
    make_console().print(table)


def ladder_line(recipe: str) -> str:
    """`gpt2: l2w32 43.9k, l2w48 84.3k, ...`: each size of the recipe's ladder and its
    parameter count at `LADDER_SCALE`, counted once per version of the recipe's files and kept
    in the cache (counting imports torch and builds every model: seconds, not an instant)."""
    import contextlib
    import json

    import lionbench
    from lionbench.config import CONF_DIR
    from lionbench.files import atomic_write_json, lionbench_cache
    from lionbench.record import text_digest

    sources = [CONF_DIR / "recipe" / f"{recipe}.yaml",
               CONF_DIR / "recipe_scale" / f"{recipe}_{LADDER_SCALE}.yaml",
               Path(lionbench.__file__).parent / "recipes" / f"{recipe}.py"]  # fmt: skip
    text = "".join(p.read_text() for p in sources if p.exists()) + lionbench.__version__
    path = lionbench_cache("ladders") / f"{recipe}-{text_digest(text, 16)}.json"
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError):  # not counted yet, or a torn file: count again
        counts = count_ladder(recipe)
        with contextlib.suppress(OSError):  # a read-only cache: count again next time
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, counts)
    shown = ", ".join(f"{size} {short_count(int(n))}" for size, n in counts.items())
    return f"{recipe}: {shown or 'no ladder'}"


def count_ladder(recipe: str) -> dict[str, int]:
    """Each size's parameters, the models built on the meta device (no memory, no init)."""
    from lionbench.config import compose
    from lionbench.config.ladder import sized_config, sizes_of
    from lionbench.recipe import load_recipe
    from lionbench.run.budget import parameter_count

    overrides = [f"recipe={recipe}", f"scale={LADDER_SCALE}"]
    return {
        size: parameter_count(load_recipe(sized_config(overrides, size)))
        for size in sizes_of(compose(overrides))
    }


def short_count(n: int) -> str:
    """3 significant digits with k/M/B: 43,808 -> 43.8k."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
