"""Where results go: the run directory (the contract with `report` and users) and W&B.

A run's directory is `<results_dir>/<recipe>/<name>` (`record.run_dir_path`): the name is
readable and ends with a hash of the run's identity, so the same config always maps to the same
directory and a finished run is found and skipped. The files are described in docs/design.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from lionbench.record import RunSummary, json_safe, read_summary


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the same directory, fsync and rename: never half-written,
    whenever the process is killed. `write` fills the open binary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


class RunDir:
    """The files of one run: config.yaml, metrics.jsonl, summary.json (atomic)."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path = path
        self.writer = writer  # False on DDP ranks other than 0: they read, never write
        self.config = path / "config.yaml"
        self.metrics = path / "metrics.jsonl"
        self.summary = path / "summary.json"

    def read_summary(self) -> RunSummary | None:
        return read_summary(self.summary)

    def check(self) -> None:
        """Refuse a summary.json that cannot be this run's: unreadable, or naming another run."""
        from lionbench.errors import UserError

        self.check_files()
        if not self.summary.exists():
            return
        fix = "delete it to run this config again"
        try:
            data = json.loads(self.summary.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{self.summary} is corrupt ({_one_line(e)}); {fix}") from None
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
        from lionbench.errors import UserError

        if not self.path.is_dir():
            if self.path.exists() or self.path.is_symlink():
                raise UserError(
                    f"the run directory {self.path} exists and is not a directory; move it away"
                )
            return
        for name in (*RUN_FILES, "checkpoint.pt", ".lock"):
            f = self.path / name
            if (f.exists() or f.is_symlink()) and not f.is_file():
                kind = "a directory" if f.is_dir() else "not a regular file"
                raise UserError(f"{f} is {kind}; remove it (lionbench writes a file there)")

    def start(self, config_yaml: str, keep_metrics_bytes: int | None = None) -> None:
        """Create the directory. A fresh start drops what an unfinished earlier attempt left; a
        resumed one keeps the metrics its checkpoint covers (the first `keep_metrics_bytes`
        bytes) and drops the records written after the checkpoint, which will be logged again."""
        if not self.writer:
            return
        if self.path.exists() and keep_metrics_bytes is None:
            for leftover in (self.metrics, self.summary, self.path / "wandb"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        for torn in self.path.glob(".*.tmp"):  # an atomic write cut short by a kill
            torn.unlink(missing_ok=True)
        atomic_write_text(self.config, config_yaml)
        if keep_metrics_bytes is not None:
            with self.metrics.open("a") as f:
                f.truncate(keep_metrics_bytes)
        self._metrics_file = self.metrics.open("a")

    def metrics_bytes(self) -> int:
        """How much of metrics.jsonl is written (flushed after every record)."""
        return self._metrics_file.tell() if self.writer else 0

    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
            return
        self._metrics_file.write(json.dumps(json_safe(record)) + "\n")
        self._metrics_file.flush()

    def write_summary(self, summary: RunSummary) -> None:
        if not self.writer:
            return
        atomic_write_text(self.summary, summary.to_json())

    def close(self) -> None:
        if getattr(self, "_metrics_file", None):
            self._metrics_file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (a killed writer) is skipped."""
    records = []
    with contextlib.suppress(FileNotFoundError), path.open() as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


# ------------------------------------------------------------------------------------------ W&B


def wandb_credentials_exist() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    with contextlib.suppress(OSError):
        return "api.wandb.ai" in netrc.read_text()
    return False


def wandb_mode(mode: str) -> str:
    """`auto` follows W&B's own WANDB_MODE when it is set (dryrun is offline), else online when
    credentials exist and offline otherwise; an explicit logger.wandb.mode wins."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if wandb_credentials_exist() else "offline"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class WandbLogger:
    """Mirrors metrics.jsonl to W&B as `<split>/<metric>`. W&B problems never stop training:
    if online W&B cannot start, the run logs to W&B offline files instead (`wandb sync` uploads
    them later) and later runs in this process go straight to offline; any other W&B error prints
    one warning and turns W&B off for the rest of the run."""

    online_failed = False  # shared by the runs of one process (a multirun)
    missing_reported = False  # "W&B is not installed" said once per process

    def __init__(
        self, cfg: dict[str, Any], run_dir: Path, name: str, resume_id: str | None = None
    ) -> None:
        self.run: Any = None
        wb = cfg["logger"]["wandb"]
        mode = wandb_mode(wb["mode"])
        if mode == "disabled":
            return
        if mode == "online" and WandbLogger.online_failed:
            mode = "offline"
        try:
            import wandb
        except ImportError:  # an optional extra in effect (a GPU image without it): say so once
            if not WandbLogger.missing_reported:
                warn(f"W&B is not installed: logger.wandb.mode={mode} ignored, W&B off")
                WandbLogger.missing_reported = True
            return
        except Exception as e:
            self._fail(e)
            return
        kwargs = dict(
            project=wb["project"],
            entity=wb["entity"],
            name=name,
            group=cfg.get("sweep_name"),
            tags=list(wb["tags"] or []),
            config=cfg,
            dir=str(run_dir),
            reinit="finish_previous",
        )
        if resume_id:  # a resumed run continues its W&B run
            kwargs.update(id=resume_id, resume="allow")
        timeout = float(wb.get("init_timeout", 30))
        try:
            self.run = wandb.init(
                mode=mode,
                **kwargs,
                settings=wandb.Settings(silent=True, console="off", init_timeout=timeout),
            )
        except Exception as e:
            if mode != "online":
                self._fail(e)
                return
            WandbLogger.online_failed = True
            warn(
                f"W&B online failed ({_one_line(e)}); logging to offline W&B files in "
                f"{run_dir / 'wandb'} instead (upload later with `wandb sync`)"
            )
            try:
                self.run = wandb.init(
                    mode="offline", **kwargs, settings=wandb.Settings(silent=True, console="off")
                )
            except Exception as e2:
                self._fail(e2)

    def _fail(self, e: BaseException) -> None:
        warn(f"W&B disabled for this run ({_one_line(e)})")
        self.run = None

    def log(self, record: dict[str, Any]) -> None:
        if self.run is None:
            return
        split = record.get("split", "train")
        data = {f"{split}/{k}": v for k, v in record.items() if k not in ("step", "split")}
        try:
            self.run.log(data, step=int(record["step"]))
        except Exception as e:
            self._fail(e)

    def log_image(self, name: str, path: Path, step: int) -> None:
        if self.run is None:
            return
        try:
            import wandb

            self.run.log({f"media/{name}": wandb.Image(str(path))}, step=step)
        except Exception as e:
            self._fail(e)

    @classmethod
    def off(cls) -> WandbLogger:
        """A logger that logs nothing (DDP ranks other than 0)."""
        logger = cls.__new__(cls)
        logger.run = None
        return logger

    @property
    def run_id(self) -> str | None:
        return getattr(self.run, "id", None)

    def preempted(self) -> None:
        """Close the W&B run so that the resumed process can continue it."""
        if self.run is None:
            return
        try:
            self.run.mark_preempting()
            self.run.finish(exit_code=1)
        except Exception as e:
            self._fail(e)

    def finish(self, summary: dict[str, Any], exit_code: int) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update(json_safe(summary))
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            self._fail(e)
