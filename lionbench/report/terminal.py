"""The report on a terminal: headlines, warnings and every table as rich tables, and
`lionbench plan`'s table. Text is escaped: labels hold brackets (`[fused]`) that rich would take
for markup and drop. Nothing here computes a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lionbench.report.analyse import Setting
from lionbench.report.headline import headlines
from lionbench.report.profile_view import summary_display
from lionbench.report.profiles import Profile
from lionbench.report.render import display_tables
from lionbench.report.scaling import ScalingStudy
from lionbench.report.studies import Study

PROFILE_TITLE = (
    "Ratio to the fastest per setting: steps / time (seeds reached), and the score (AlgoPerf: "
    "1 = fastest everywhere; report.md says how)"
)


def print_console(
    settings: list[Setting],
    problems: pd.DataFrame,
    found: Sequence[Study] = (),
    notes: Sequence[str] = (),
    profile: Profile | None = None,
    scaling: Sequence[ScalingStudy] = (),
) -> None:
    """The same tables as rich tables on the terminal (the performance profiles' summary after
    the settings; each scaling study's verdict lines, or why it has none, after the sweeps').
    Text is escaped: labels hold brackets (`[fused]`, `[<setting>]`) that rich would take for
    markup and drop."""
    from rich.markup import escape

    from lionbench.console import make_console

    console = make_console()  # full width outside a terminal: run directories stay whole
    for w in notes:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    for st in found:
        console.print(f"[bold]{escape(st.headline)}[/]")
    for sc in scaling:
        for line in sc.verdicts or [f"no verdict: {sc.problem}"]:
            console.print(f"[bold]scaling {escape(sc.name)}:[/] {escape(line)}")
    for s in settings:
        for line in headlines(s):
            console.print(f"[bold]{escape(line)}[/]")
    for st in found:
        if not st.claims.empty:
            console.print(rich_table(f"Sweep {st.name}: claims", st.claims))
    for s in settings:
        console.rule(escape(s.label))
        for w in s.warnings:
            console.print(f"[yellow]warning:[/] {escape(w)}")
        for title, df in display_tables(s).items():
            console.print(rich_table(title, df))
    if profile is not None:
        console.rule("Performance profiles across recipes")
        for w in profile.notes:
            console.print(f"[yellow]note:[/] {escape(w)}")
        console.print(rich_table(PROFILE_TITLE, summary_display(profile)))
    if not problems.empty:
        console.print(rich_table("Diverged, failed and unfinished runs", problems))


def rich_table(title: str, df: pd.DataFrame) -> Any:
    """A rich table of strings, every one escaped (see `print_console`)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for col in df.columns:
        table.add_column(escape(str(col)))
    for _, r in df.iterrows():
        table.add_row(*(escape(str(v)) for v in r))
    return table


def print_plan(table: pd.DataFrame) -> None:
    """`lionbench plan`'s table, or why there is none."""
    from lionbench.console import make_console

    console = make_console()
    if table.empty:
        console.print(
            "no setting has two or more paired seeds of a candidate and its baseline on this "
            "metric: nothing to plan from (run 2+ seeds of each arm first)",
            soft_wrap=True,
        )
        return
    ratio = table["metric"].iloc[0] in ("steps_to_target", "time_to_target_s", "steps_per_s",
                                         "opt_step_ms")  # fmt: skip
    shown = pd.DataFrame({
        "setting": table["setting"],
        "metric": table["metric"],
        "pairs seen": table["pairs"],
        "sd of differences" + (" (log)" if ratio else ""): [f"{x:.3g}" for x in table["sd"]],
        "effect": [f"{x:.3g}x" if ratio else f"{x:+.3g}" for x in table["effect"]],
        "in sds": [f"{x:.2g}" for x in table["effect_sd"]],
        "arms (Holm)": table["arms"],
        "seeds for 80% power": table["seeds_needed"],
    })  # fmt: skip
    console.print(rich_table("Seeds a paired comparison needs (paired t-test)", shown))
