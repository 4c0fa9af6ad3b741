"""The run directory: the one module that knows its files, reads them and says what a run's status
is. The report, sweeps, studies, the checkpoint, the lock and the launcher all go through it.

A run lives in `<results_dir>/<recipe>/<name>` (`run_dir_path`): the name is readable and ends
with a hash of the run's identity (`record.run_name`), so the same config always maps to the same
directory and a finished run is found and skipped. Sweep and study manifests live beside the
recipes, in `<results_dir>/_sweeps` and `<results_dir>/_studies`. The files are described in
docs/design.md ("The run-directory contract"). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from lionbench.errors import UserError, disk_full_error, first_line, is_disk_full
from lionbench.files import atomic_write_text, json_safe
from lionbench.record import RunSummary, Status, run_name

# The files of a run directory (docs/design.md, "Files").
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
NOT_STARTED = "NOT_STARTED"
ERROR_LOG = "error.log"
WANDB = "wandb"  # W&B's own files (offline runs, or the local copy of online ones)
# What the results tree holds besides run directories: the manifests of sweeps and studies.
SWEEPS = "_sweeps"
STUDIES = "_studies"

# Written (before config.yaml) when a run starts afresh, removed once its first step is done or
# a summary is written: a directory holding it has no result and nothing to resume.
NOT_STARTED_TEXT = (
    "This run was set up but has not trained a step: it was interrupted during setup (or is "
    "setting up now). Run the same command again to start it.\n"
)
NOT_STARTED_FIX = (
    "interrupted before step 1, nothing trained: run the same command again to start it, "
    "or delete the directory"
)


def run_dir_path(cfg: dict[str, Any], device_type: str) -> Path:
    """Where the run of this resolved config lives: `<results_dir>/<recipe>/<run name>`, or the
    existing directory with the same identity hash under an earlier name (names gained non-default
    hyperparameters in issue 26: runs made before keep their directories)."""
    name = run_name(cfg, device_type)
    path = Path(cfg["results_dir"]).expanduser() / cfg["recipe"]["name"] / name
    if path.exists() or not path.parent.is_dir():
        return path
    earlier = sorted(p for p in path.parent.glob(f"*-{name.rsplit('-', 1)[1]}") if p.is_dir())
    return earlier[0] if earlier else path


def manifest_path(results_dir: Path, kind: str, name: str) -> Path:
    """`<results_dir>/_sweeps/<name>.json` (kind SWEEPS) or `_studies/<name>.json` (STUDIES)."""
    return results_dir / kind / f"{name}.json"


def find_manifests(roots: Iterable[Path], kind: str) -> list[Path]:
    """Every manifest of a kind (SWEEPS, STUDIES) anywhere under the roots."""
    found: set[Path] = set()
    for root in roots:
        found.update(p for p in root.rglob(f"{kind}/*.json") if p.parent.name == kind)
    return sorted(found)


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every directory holding a config.yaml under the roots (W&B's own copies excluded)."""
    dirs: set[Path] = set()
    for root in roots:
        if (root / CONFIG).exists():
            dirs.add(root)
        dirs.update(p.parent for p in root.rglob(CONFIG) if WANDB not in p.parts)
    return sorted(dirs)


class RunDir:
    """The files of one run. Readers: `read_summary`, `read_config`, `read_metrics`, `status`.
    The writer (rank 0 of a run) creates the directory (`start`), appends metrics (`log`) and
    writes the summary atomically (`write_summary`); other DDP ranks construct it with
    `writer=False` and write nothing."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path = path
        self.writer = writer  # False on DDP ranks other than 0: they read, never write
        self.config = path / CONFIG
        self.metrics = path / METRICS
        self.summary = path / SUMMARY
        self.checkpoint = path / CHECKPOINT
        self.lock = path / LOCK
        self.marker = path / NOT_STARTED
        self.error_log = path / ERROR_LOG
        self.wandb = path / WANDB
        self._metrics_file: TextIO | None = None

    # ---------------------------------------------------------------------------- reading

    def read_summary(self) -> RunSummary | None:
        """summary.json as a record, or None when it is missing or unreadable."""
        try:
            data = json.loads(self.summary.read_text())
            return RunSummary.from_dict(data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            return None

    def read_config(self) -> Any:
        """config.yaml, parsed (libyaml's C parser when present: reading 1,000 configs is the
        report's largest cost). Raises OSError or yaml.YAMLError."""
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(self.config.read_text(), Loader=loader)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Records of metrics.jsonl; a torn last line (a killed writer) is skipped. The lines
        are parsed as one JSON array where they all parse (one call instead of one per line:
        the report reads 50,000 lines from 1,000 runs), else line by line."""
        try:
            lines = [line for line in self.metrics.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
        with contextlib.suppress(ValueError):
            records = json.loads(f"[{','.join(lines)}]")
            if len(records) == len(lines):  # no line held two values, none spanned two
                return records
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def status(self) -> Status:
        """The run's status as a sweep, the report or a launcher sees it (docs/design.md,
        "Statuses"): the summary's, else what the directory says."""
        summary = self.read_summary()
        if summary is None:
            if not self.path.exists():
                return Status.MISSING
            return Status.NOT_STARTED if self.never_trained() else Status.PARTIAL
        return Status.PARTIAL if summary.status == Status.RUNNING else summary.status

    def never_trained(self) -> bool:
        """A directory without a summary that holds no trained step: no checkpoint, and the
        runner's `NOT_STARTED` marker or (directories of earlier versions, which wrote no marker)
        no metrics record past step 0. Rerunning the command starts such a run from scratch."""
        if self.checkpoint.exists():  # a trained step, kept: the run resumes
            return False
        if self.marker.is_file():
            return True
        return not self._any_step_logged()

    def _any_step_logged(self) -> bool:
        """Whether metrics.jsonl has a record past step 0 (read up to the first one)."""
        try:
            with self.metrics.open() as f:
                for line in f:
                    try:
                        step = json.loads(line).get("step")
                    except (ValueError, AttributeError):
                        continue
                    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
                        return True
        except OSError:
            return False
        return False

    # ---------------------------------------------------------------------------- checking

    def check(self) -> None:
        """Refuse a summary.json that cannot be this run's: unreadable, or naming another run."""
        self.check_files()
        if not self.summary.exists():
            return
        fix = "delete it to run this config again"
        try:
            data = json.loads(self.summary.read_text())
        except (OSError, ValueError) as e:
            raise UserError(
                f"{self.summary} is corrupt ({first_line(e, with_type=True)}); {fix}"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise UserError(f"{self.summary} is not a lionbench summary (no status); {fix}")
        try:
            RunSummary.from_dict(data)
        except ValueError as e:  # a schema this version cannot read
            raise UserError(f"{self.summary}: {e}; {fix}") from None
        if Path(str(data.get("run_dir", ""))).name != self.path.name:
            raise UserError(
                f"{self.summary} belongs to another run ({data.get('run_dir')!r}); {fix}"
            )

    def check_files(self) -> None:
        """The directory and the files lionbench writes in it are what they should be: a
        directory, and regular files (not a directory someone made, not a FIFO)."""
        if not self.path.is_dir():
            if self.path.exists() or self.path.is_symlink():
                raise UserError(
                    f"the run directory {self.path} exists and is not a directory; move it away"
                )
            return
        for f in (self.config, self.metrics, self.summary, self.checkpoint, self.lock, self.marker):
            if (f.exists() or f.is_symlink()) and not f.is_file():
                kind = "a directory" if f.is_dir() else "not a regular file"
                raise UserError(f"{f} is {kind}; remove it (lionbench writes a file there)")

    # ---------------------------------------------------------------------------- writing

    def start(self, config_yaml: str, keep_metrics_bytes: int | None = None) -> None:
        """Create the directory. A fresh start drops what an unfinished earlier attempt left; a
        resumed one keeps the metrics its checkpoint covers (the first `keep_metrics_bytes`
        bytes) and drops the records written after the checkpoint, which will be logged again.
        A fresh start writes the `NOT_STARTED` marker before config.yaml, so a kill at any point
        of the setup leaves a directory that no reader takes for a result (`never_trained`)."""
        if not self.writer:
            return
        if self.path.exists() and keep_metrics_bytes is None:
            for leftover in (self.metrics, self.summary, self.wandb):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        if self.error_log.is_file():  # an earlier attempt's traceback: not this attempt's
            self.error_log.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        for torn in self.path.glob(".*.tmp"):  # an atomic write cut short by a kill
            torn.unlink(missing_ok=True)
        if keep_metrics_bytes is None:
            self.mark_setup()
        else:  # resumed: it trained before
            self.mark_started()
        atomic_write_text(self.config, config_yaml)
        if keep_metrics_bytes is not None:
            with self.metrics.open("a") as f:
                f.truncate(keep_metrics_bytes)
        self._metrics_file = self.metrics.open("a")

    def write_config(self, config_yaml: str) -> None:
        """config.yaml alone, for torchrun's workers to read (`dist.nproc > 1`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, config_yaml)

    def mark_setup(self) -> None:
        """Say, until the first step is done, that this directory holds no result yet."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.marker, NOT_STARTED_TEXT)

    def mark_started(self) -> None:
        """The first step is done (or a summary says what came of the run): drop the marker."""
        if self.writer:
            self.marker.unlink(missing_ok=True)

    def metrics_bytes(self) -> int:
        """How much of metrics.jsonl is written (flushed after every record)."""
        return self._metrics_file.tell() if self._metrics_file is not None else 0

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and flush it."""
        if self._metrics_file is None:
            return
        try:
            self._metrics_file.write(json.dumps(json_safe(record)) + "\n")
            self._metrics_file.flush()
        except OSError as e:  # a write on an open file names no file: name it
            if is_disk_full(e):
                raise disk_full_error(e, self.metrics) from e
            raise

    def write_summary(self, summary: RunSummary) -> None:
        if not self.writer:
            return
        atomic_write_text(self.summary, summary.to_json())
        self.mark_started()

    def write_error_log(self, text: str) -> None:
        """The traceback of a failed run (error.log), from whichever rank failed; OSError when
        even that does not fit."""
        self.error_log.write_text(text)

    def close(self) -> None:
        if self._metrics_file is not None:
            try:
                self._metrics_file.close()
            except OSError as e:  # the rest of a record whose write failed (a full disk)
                if not is_disk_full(e):
                    raise
