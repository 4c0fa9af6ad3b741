"""One run's W&B logging: the mode, the run's W&B identity, and `WandbLogger`, which mirrors
metrics.jsonl to W&B as `<split>/<metric>`.

W&B problems never stop training: if online W&B cannot start, the run logs to W&B offline files
instead (`wandb sync` uploads them later) and later runs in this process go straight to offline;
any other W&B error prints one warning and turns W&B off for the rest of the run. The network
work (a reachability check, `wandb.init` and its fallback) happens in `WandbLogger.start`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lionbench.errors import first_line, warn
from lionbench.files import json_safe


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
            outcome.append(f"{host}:{port}: {e.strerror or first_line(e, with_type=True)}")

    thread = threading.Thread(target=connect, daemon=True, name="wandb-connect-check")
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


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


def _import_wandb(mode: str) -> Any:
    """The wandb module, or None (W&B off) with one warning: not installed (an optional extra
    in effect, a GPU image without it; said once per process) or broken."""
    try:
        import wandb
    except ImportError:
        if not WandbLogger.missing_reported:
            warn(f"W&B is not installed: logger.wandb.mode={mode} ignored, W&B off")
            WandbLogger.missing_reported = True
        return None
    except Exception as e:
        WandbLogger.failed(e)
        return None
    return wandb


def offline_note(wandb_dir: Path) -> str:
    return f"logging to offline W&B files in {wandb_dir} instead (upload later with `wandb sync`)"


class WandbLogger:
    """A W&B run, or none (W&B off, disabled, or failed): every method is then a no-op."""

    online_failed = False  # shared by the runs of one process (a multirun)
    missing_reported = False  # "W&B is not installed" said once per process

    def __init__(self, run: Any = None, mode: str = "disabled", path: str = "") -> None:
        self.run = run
        self.mode = mode  # online | offline | disabled: what is logged
        self._path = path  # [entity/]project, for `record` when the run does not say

    @classmethod
    def off(cls) -> WandbLogger:
        """A logger that logs nothing (W&B disabled; DDP ranks other than 0)."""
        return cls()

    @classmethod
    def start(
        cls,
        cfg: dict[str, Any],
        run_dir: Path,
        wandb_dir: Path,
        name: str,
        resume_id: str | None = None,
    ) -> WandbLogger:
        """Start the run's W&B run (continue `resume_id` after a resume) in the mode the config
        asks for; W&B writes its files to `wandb_dir` (`<run_dir>/wandb`)."""
        wb = cfg["logger"]["wandb"]
        mode = wandb_mode(wb["mode"])
        if mode == "online" and WandbLogger.online_failed:
            mode = "offline"
        wandb = None if mode == "disabled" else _import_wandb(mode)
        if wandb is None:
            return cls.off()
        timeout = float(wb.get("init_timeout", 30))
        if mode == "online" and (why := wandb_server_unreachable(min(timeout, CONNECT_TIMEOUT_S))):
            WandbLogger.online_failed = True  # the next runs of this process go offline at once
            warn(f"W&B server unreachable ({why}); {offline_note(wandb_dir)}")
            mode = "offline"
        kwargs = wandb_identity(cfg, name)
        kwargs.update(config=cfg, dir=str(run_dir), reinit="finish_previous")
        if resume_id:  # a resumed run continues its W&B run
            kwargs.update(id=resume_id, resume="allow")
        path = "/".join(str(kwargs[k]) for k in ("entity", "project") if kwargs.get(k))
        try:
            settings = wandb.Settings(silent=True, console="off", init_timeout=timeout)
            logger = cls(wandb.init(mode=mode, **kwargs, settings=settings), mode, path)
        except Exception as e:
            if mode != "online":
                return cls.failed(e)
            WandbLogger.online_failed = True
            warn(f"W&B online failed ({first_line(e, with_type=True)}); {offline_note(wandb_dir)}")
            return cls._offline(wandb, kwargs, path)  # the warning said how to sync
        if mode == "offline":
            print(
                f"W&B: offline run in {wandb_dir}; upload it with: wandb sync "
                f"{wandb_dir}/offline-run-*",
                file=sys.stderr,
                flush=True,
            )
        return logger

    @classmethod
    def _offline(cls, wandb: Any, kwargs: dict[str, Any], path: str) -> WandbLogger:
        """The fallback after a failed online start: the same run, logged to offline files."""
        try:
            settings = wandb.Settings(silent=True, console="off")
            return cls(wandb.init(mode="offline", **kwargs, settings=settings), "offline", path)
        except Exception as e:
            return cls.failed(e)

    @classmethod
    def failed(cls, e: BaseException) -> WandbLogger:
        """W&B could not start: one warning, and a logger that logs nothing."""
        logger = cls()
        logger._fail(e)
        return logger

    def _fail(self, e: BaseException) -> None:
        warn(f"W&B disabled for this run ({first_line(e, with_type=True)})")
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
        """The run's summary (its config is W&B's run config already) and its exit code."""
        if self.run is None:
            return
        try:
            self.run.summary.update(json_safe({k: v for k, v in summary.items() if k != "config"}))
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            self._fail(e)
