"""`lionbench list`: what a run can be made of, read from conf/ and the optimizer registry."""

from __future__ import annotations


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
