"""Where results go: the run directory (the contract with `report` and users) and W&B.

A run's directory is `<results_dir>/<recipe>/<name>` (`record.run_dir_path`): the name is
readable and ends with a hash of the run's identity, so the same config always maps to the same
directory and a finished run is found and skipped. The files are described in docs/design.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

from lionbench.errors import disk_full_error, is_disk_full
from lionbench.record import (
    NOT_STARTED_FILE,
    NOT_STARTED_TEXT,
    RunSummary,
    json_safe,
    read_summary,
)


class _WriteRecorder:
    """A binary file that remembers the OSError of a failed write. torch.save swallows it and
    raises `[enforce fail at inline_container.cc] unexpected pos` instead, which never says
    that the disk is full."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()


def _file_mode() -> int:
    """The mode open() would give a new file under the user's umask (mkstemp's is 0600, which
    hides summaries and reports from the rest of a group on a shared cluster)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write via a temporary file in the same directory, fsync and rename: never half-written,
    whenever the process is killed, and a failed write (a full disk) leaves the previous file
    as it was. `write` fills the open binary file. A full disk raises OSError(ENOSPC) naming
    `path`, whatever the writer made of it."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(e, path) from e
        raise
    recorder = None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            recorder = _WriteRecorder(f)
            write(cast(BinaryIO, recorder))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        cause = recorder.error if recorder is not None and recorder.error is not None else e
        if isinstance(cause, OSError) and is_disk_full(cause):
            raise disk_full_error(cause, path) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


class RunDir:
    """The files of one run: config.yaml, metrics.jsonl, summary.json (atomic), and while a
    fresh run has not done its first step, the `NOT_STARTED` marker."""

    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path = path
        self.writer = writer  # False on DDP ranks other than 0: they read, never write
        self.config = path / "config.yaml"
        self.metrics = path / "metrics.jsonl"
        self.summary = path / "summary.json"
        self.error_log = path / "error.log"
        self.not_started = path / NOT_STARTED_FILE

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
        for name in (*RUN_FILES, "checkpoint.pt", ".lock", NOT_STARTED_FILE):
            f = self.path / name
            if (f.exists() or f.is_symlink()) and not f.is_file():
                kind = "a directory" if f.is_dir() else "not a regular file"
                raise UserError(f"{f} is {kind}; remove it (lionbench writes a file there)")

    def start(self, config_yaml: str, keep_metrics_bytes: int | None = None) -> None:
        """Create the directory. A fresh start drops what an unfinished earlier attempt left; a
        resumed one keeps the metrics its checkpoint covers (the first `keep_metrics_bytes`
        bytes) and drops the records written after the checkpoint, which will be logged again.
        A fresh start writes the `NOT_STARTED` marker before config.yaml, so a kill at any point
        of the setup leaves a directory that no reader takes for a result (`record.not_started`)."""
        if not self.writer:
            return
        if self.path.exists() and keep_metrics_bytes is None:
            for leftover in (self.metrics, self.summary, self.path / "wandb"):
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

    def mark_setup(self) -> None:
        """Say, until the first step is done, that this directory holds no result yet."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.not_started, NOT_STARTED_TEXT)

    def mark_started(self) -> None:
        """The first step is done (or a summary says what came of the run): drop the marker."""
        if self.writer:
            self.not_started.unlink(missing_ok=True)

    def metrics_bytes(self) -> int:
        """How much of metrics.jsonl is written (flushed after every record)."""
        return self._metrics_file.tell() if self.writer else 0

    def log(self, record: dict[str, Any]) -> None:
        if not self.writer:
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

    def close(self) -> None:
        if getattr(self, "_metrics_file", None):
            try:
                self._metrics_file.close()
            except OSError as e:  # the rest of a record whose write failed (a full disk)
                if not is_disk_full(e):
                    raise


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


DEFAULT_WANDB_URL = "https://api.wandb.ai"
# The most a run waits to learn that the W&B server cannot be reached at all.
CONNECT_TIMEOUT_S = 5.0


def wandb_server_unreachable(timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why the W&B server (WANDB_BASE_URL, else W&B's cloud) cannot be reached, or None when a
    TCP connection opens. wandb.init on a dead server waits for init_timeout and retries (30-50
    s per process); this check fails within `timeout` seconds, name lookup included (it runs in
    a daemon thread, since getaddrinfo has no timeout of its own)."""
    url = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL)
    host = url.hostname or ""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return f"WANDB_BASE_URL {url.geturl()!r} has an invalid port"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port}: {e.strerror or _one_line(e)}")

    thread = threading.Thread(target=connect, daemon=True, name="wandb-connect-check")
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def wandb_identity(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """W&B's project, entity, name, group and tags of a run. Unset config values leave W&B's
    own variables in charge (WANDB_PROJECT, WANDB_ENTITY, WANDB_TAGS): W&B reads them only for
    arguments not given. The name leads with the recipe; a sweep's runs share its group and a
    `sweep:<name>` tag."""
    wb = cfg["logger"]["wandb"]
    sweep = cfg.get("sweep_name")
    recipe = str((cfg.get("recipe") or {}).get("name") or "")
    out: dict[str, Any] = {
        "project": wb.get("project") or os.environ.get("WANDB_PROJECT") or "lionbench",
        "name": name if not recipe or name.startswith(recipe) else f"{recipe}-{name}",
        "group": sweep,
    }
    if wb.get("entity"):
        out["entity"] = wb["entity"]
    tags = [*(wb.get("tags") or []), *([f"sweep:{sweep}"] if sweep else [])]
    if tags:
        out["tags"] = tags
    return out


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
        self.mode = "disabled"
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
        timeout = float(wb.get("init_timeout", 30))
        if mode == "online" and (why := wandb_server_unreachable(min(timeout, CONNECT_TIMEOUT_S))):
            WandbLogger.online_failed = True  # the next runs of this process go offline at once
            warn(
                f"W&B server unreachable ({why}); logging to offline W&B files in "
                f"{run_dir / 'wandb'} instead (upload later with `wandb sync`)"
            )
            mode = "offline"
        self.mode = mode  # what is logged: offline after a failed online start (below)
        kwargs = wandb_identity(cfg, name)
        kwargs.update(config=cfg, dir=str(run_dir), reinit="finish_previous")
        if resume_id:  # a resumed run continues its W&B run
            kwargs.update(id=resume_id, resume="allow")
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
            self.mode = "offline"  # (`mode` stays: the warning already said how to sync)
            try:
                self.run = wandb.init(
                    mode="offline", **kwargs, settings=wandb.Settings(silent=True, console="off")
                )
            except Exception as e2:
                self._fail(e2)

        self._path = "/".join(str(kwargs[k]) for k in ("entity", "project") if kwargs.get(k))
        if self.run is not None and mode == "offline":
            print(
                f"W&B: offline run in {run_dir / 'wandb'}; upload it with: wandb sync "
                f"{run_dir / 'wandb'}/offline-run-*",
                file=sys.stderr,
                flush=True,
            )

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
        logger.mode = "disabled"
        return logger

    @property
    def run_id(self) -> str | None:
        return getattr(self.run, "id", None)

    def record(self) -> dict[str, str | None]:
        """summary.json's `wandb_run` and `wandb_mode`: where a later sweep that reuses this
        run finds it to join it to its group (`join_sweep_group`)."""
        if self.run is None or self.run_id is None:
            return {"wandb_run": None, "wandb_mode": None}
        path = getattr(self.run, "path", None)  # W&B's [entity/]project/id
        if not isinstance(path, str) or not path:
            path = f"{self._path}/{self.run_id}"
        return {"wandb_run": path, "wandb_mode": self.mode}

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


# ------------------------------------------------------------ W&B: reused runs join the sweep

# The run directories W&B writes under `dir/wandb` (W&B's documented layout, what `wandb sync`
# takes): `run-<YYYYMMDD_HHMMSS>-<id>` online, `offline-run-<...>-<id>` offline.
WANDB_RUN_DIR = re.compile(r"(?P<offline>offline-)?run-(?P<time>\d{8}_\d{6})-(?P<id>[^/]+)")
API_TIMEOUT_S = 20  # per W&B API request: a slow server delays a sweep round, never stops it


@dataclass(frozen=True)
class WandbRef:
    """The W&B run that a finished run directory was logged to."""

    path: str  # [entity/]project/id, what wandb.Api().run takes
    mode: str  # online | offline
    group: str | None  # the group it was logged under: its sweep_name


def wandb_ref(run_dir: Path) -> WandbRef | None:
    """summary.json's `wandb_run`; for a run written before lionbench recorded it, the newest
    W&B run under `<run_dir>/wandb`, in the project and entity its config.yaml gives (with
    today's WANDB_PROJECT where the config left it unset). None: no W&B run (W&B was off)."""
    summary = read_summary(run_dir / "summary.json")
    if summary is None:
        return None
    if summary.wandb_run:
        return WandbRef(summary.wandb_run, summary.wandb_mode or "online", summary.sweep_name)
    found = sorted(
        (m["time"], bool(m["offline"]), m["id"])
        for p in (run_dir / "wandb").glob("*run-*")
        if (m := WANDB_RUN_DIR.fullmatch(p.name)) and p.is_dir()
    )
    if not found:
        return None
    _, offline, run_id = found[-1]
    import yaml  # omegaconf's dependency; only old runs need it

    try:
        who = wandb_identity(yaml.safe_load((run_dir / "config.yaml").read_text()), "")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    where = "/".join(str(who[k]) for k in ("entity", "project") if who.get(k))
    return WandbRef(f"{where}/{run_id}", "offline" if offline else "online", summary.sweep_name)


def join_sweep_group(sweep: str, reused: list[tuple[dict[str, Any], Path]]) -> None:
    """Put the W&B runs of finished runs that a sweep round reuses into the sweep's group, and
    tag them `sweep:<name>`. Such a run is not trained again, so it was logged under the group of
    the sweep that trained it (or none). A W&B run has one group, changed through W&B's public
    API (`Run.update()` writes `group` and `tags`); its earlier `sweep:` tags stay. Nothing here
    fails the sweep: a problem is one line with how many runs stayed outside the group. `reused`:
    (resolved config, run directory) of each run the round skips."""
    if not reused:
        return
    mode = wandb_mode(str(reused[0][0]["logger"]["wandb"]["mode"]))
    if mode == "disabled":
        return
    refs = [wandb_ref(path) for _, path in reused]
    outside = [r for r in refs if r is None or r.group != sweep]
    todo = [r for r in outside if r is not None]
    if unlogged := len(outside) - len(todo):
        say(f"{unlogged} reused run(s) have no W&B run to put in group {sweep} (W&B was off)")
    if not todo:
        return
    if mode == "offline":
        say(
            f"{len(todo)} reused run(s) keep their earlier W&B group: this sweep logs offline "
            f"and cannot change a W&B run; run the sweep again online to join them to {sweep}"
        )
        return
    _join_online(sweep, todo)


def say(message: str) -> None:
    print(f"W&B: {message}", flush=True)


def _join_online(sweep: str, refs: list[WandbRef]) -> None:
    """Join the runs through the public API; stop at the first error that is not a missing
    run (the next calls would wait for the same dead server)."""
    unreachable = "unreachable earlier in this process" if WandbLogger.online_failed else None
    why = unreachable or wandb_server_unreachable()
    api = None
    if why is None:
        try:
            import wandb

            api = wandb.Api(timeout=API_TIMEOUT_S)
        except Exception as e:  # not installed, no API key, a bad WANDB_BASE_URL
            why = _one_line(e)
    if api is None:
        warn(f"W&B: {len(refs)} reused run(s) could not be joined to group {sweep} ({why})")
        return
    joined, missing = 0, []
    for i, ref in enumerate(refs):
        try:
            joined += _join(api.run(ref.path), sweep)
        except ValueError:  # wandb's RunNotFoundError (a ValueError): not on the server
            missing.append(ref)
        except Exception as e:
            warn(
                f"W&B: {len(refs) - i} of {len(refs)} reused run(s) could not be joined to "
                f"group {sweep} ({_one_line(e)}); the sweep goes on"
            )
            break
    if joined:
        say(f"{joined} reused run(s) joined group {sweep}")
    _report_missing(sweep, missing)


def _join(run: Any, sweep: str) -> bool:
    """One W&B run into the group, with the sweep's tag. False: it was there already (a sweep
    run again), and nothing was sent."""
    tag = f"sweep:{sweep}"
    tags = list(run.tags or [])
    if run.group == sweep and tag in tags:
        return False
    run.group = sweep
    run.tags = tags if tag in tags else [*tags, tag]
    run.update()
    return True


def _report_missing(sweep: str, missing: list[WandbRef]) -> None:
    """Offline runs not uploaded yet, and online runs the server does not know."""
    if unsynced := sum(r.mode == "offline" for r in missing):
        say(
            f"{unsynced} reused run(s) were logged offline and are not on the W&B server yet: "
            f"upload them with `wandb sync`, then run the sweep again to join them to {sweep}"
        )
    if gone := len(missing) - unsynced:
        warn(
            f"W&B: {gone} reused run(s) not found on the W&B server (deleted, or in another "
            f"project): not in group {sweep}"
        )
