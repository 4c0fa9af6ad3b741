"""Terminal output: a rich progress bar on a terminal, plain log lines otherwise.

Updated only at log intervals (when the loop has already synchronized), never per step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

PIPE_WIDTH = 400  # columns when not on a terminal: SLURM logs and pipes get whole paths


def make_console() -> Any:
    """A rich Console: the terminal's width on a terminal; elsewhere (SLURM logs, pipes, files)
    $COLUMNS or PIPE_WIDTH, so that run-directory paths are never cut or wrapped (rich would
    assume 80 columns). Tables take only the width their cells need."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() else PIPE_WIDTH, soft_wrap=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a table or a progress line: `digits` significant figures, `-` for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def short(value: float | None, scale: float = 1.0, pct: bool = False) -> str:
    """A benchmark figure in three significant figures or more (12.3, 123, 1.23), or a share
    as a percentage, so that tables fit 80-100 columns; `-` for None."""
    if value is None:
        return "-"
    if pct:
        return f"{value:.1%}"
    v = value * scale
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


class Progress:
    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.bar: Any = None
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task(label, total=total, status="")
            self.bar.start()

    def update(self, step: int, **fields: Any) -> None:
        status = "  ".join(f"{k} {fmt(v)}" for k, v in fields.items())
        if self.bar is not None:
            self.bar.update(self.task, completed=step, status=status)
        else:
            print(f"[{self.label}] step {step}/{self.total}  {status}", flush=True)

    def print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, highlight=False)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary_table(summary: dict[str, Any], next_step: bool = True) -> None:
    """A short table of the headline numbers of a finished run."""
    from rich.table import Table

    table = Table(
        title=f"{summary['recipe']} / {summary['optim']} ({summary['status']})",
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("steps", summary.get("steps")),
        ("final train loss", summary.get("final_train_loss")),
        ("final val loss", summary.get("final_val_loss")),
        ("best val loss", summary.get("best_val_loss")),
        ("loss floor", summary.get("loss_floor")),
        ("gap to floor", summary.get("gap_to_floor")),
        ("steps to target", summary.get("steps_to_target")),
        ("steps/s", summary.get("steps_per_s")),
        ("examples/s", summary.get("examples_per_s")),
        ("tokens/s", summary.get("tokens_per_s")),
        ("MFU", summary.get("mfu")),
        ("optimizer step (ms)", summary.get("opt_step_ms")),
        ("optimizer state (MB)", (summary.get("optimizer_state_bytes") or 0) / 1e6),
        ("peak memory (MB)", (summary.get("peak_mem_bytes") or 0) / 1e6),
        ("run dir", summary.get("run_dir")),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(name, fmt(value))
    console = make_console()
    console.print(table)
    if (
        next_step  # a multirun says one at its end, a sweep its own
        and summary.get("status") == "completed"
        and summary.get("run_dir")
        and not summary.get("sweep_name")
    ):
        console.print(next_steps(summary), soft_wrap=True, highlight=False)


def next_steps(summary: dict[str, Any]) -> str:
    """What a first run cannot say alone (is Lion better?) and the command that answers it:
    the other optimizer on the same seed (a paired comparison), then the report."""
    from lionbench.optim.registry import BASELINE, CANDIDATE

    other = CANDIDATE if summary.get("optim") == BASELINE else BASELINE
    results = Path(str(summary["run_dir"])).parent.parent
    return (
        f"next: compare with {other} on the same seed (same init and batches): run the same "
        f"command with optim={other}, then: lionbench report {results}  (tuned lr for both, "
        f"several seeds: lionbench sweep recipe={summary.get('recipe')} "
        f"scale={summary.get('scale') or 'small'})"
    )


def multirun_table(summaries: list[dict[str, Any]], results: Path) -> None:
    """The end of `run -m`: one table of its runs (optimizer, lr, wd, seed, status, final val
    loss, steps/s, directory) and the next step that fits the optimizers it ran."""
    from rich.table import Table

    from lionbench.optim.registry import BASELINE, CANDIDATE

    table = Table(title=f"multirun: {len(summaries)} run(s)", title_justify="left")
    for col in ("optimizer", "lr", "wd", "seed", "status", "final val loss", "steps/s", "run"):
        table.add_column(col, justify="right" if col in ("lr", "wd", "seed") else "left")
    for s in summaries:
        table.add_row(
            str(s.get("optim")), fmt(s.get("lr")), fmt(s.get("weight_decay")), str(s.get("seed")),
            str(s.get("status")), fmt(s.get("final_val_loss")), fmt(s.get("steps_per_s")),
            Path(str(s.get("run_dir"))).name,
        )  # fmt: skip
    console = make_console()
    console.print(table)
    ran = {s.get("optim") for s in summaries if s.get("status") == "completed"}
    if len(ran) >= 2:
        line = f"next: lionbench report {results}  (paired by seed: the same seeds for each)"
    else:
        mine = next(iter(ran), BASELINE)
        other = CANDIDATE if mine == BASELINE else BASELINE
        line = (
            f"next: the same multirun with optim={other} (same seeds: the same init and "
            f"batches), then: lionbench report {results}"
        )
    console.print(line, soft_wrap=True, highlight=False)
