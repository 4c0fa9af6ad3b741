"""Where the loop's records go: the run directory's metrics.jsonl and checkpoint, and W&B.

The loop (loop/train.py) knows no file and no W&B: it hands each record, checkpoint and artifact
to a `RunOutputs`, which the runner builds around the run directory and the W&B run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionbench.run import checkpoint
from lionbench.run.rundir import RunDir
from lionbench.tracking.wandb_run import WandbLogger


class RunOutputs:
    """The loop's `RunSink` (loop/train.py) for one run directory and its W&B run."""

    def __init__(self, rundir: RunDir, wandb: WandbLogger) -> None:
        self.rundir, self.wandb = rundir, wandb
        self.path = rundir.path  # where recipes write artifacts (`Recipe.finalize`)

    def record(self, record: dict[str, Any]) -> None:
        """metrics.jsonl keeps nulls (a `time_s` not known yet); W&B gets the known values."""
        self.rundir.log(record)
        self.wandb.log({k: v for k, v in record.items() if v is not None})

    def started(self) -> None:
        """The first step is done: the directory holds a trained step from now on."""
        self.rundir.mark_started()

    def checkpoint(self, content: dict[str, Any]) -> None:
        """checkpoint.pt: the loop's content, and where the run stands (its name, the bytes of
        metrics.jsonl the checkpoint covers, its W&B run)."""
        run = {
            "name": self.rundir.path.name,
            "metrics_bytes": self.rundir.metrics_bytes(),
            "wandb_id": self.wandb.run_id,
        }
        checkpoint.save(self.rundir, {**content, "run": run})

    def artifact(self, name: str, path: Path, step: int) -> None:
        """An image a recipe wrote after the run (U-Net's samples.png), to W&B."""
        self.wandb.log_image(name, path, step)
