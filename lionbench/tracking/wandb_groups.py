"""A sweep's W&B group: the finished runs a sweep reuses (not trained again, so logged under the
group of the sweep that trained them) join its group and get its `sweep:<name>` tag, through
W&B's public API. Nothing here fails a sweep: a problem is one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionbench.errors import first_line, warn
from lionbench.record import RunSummary
from lionbench.tracking import wandb_run
from lionbench.tracking.wandb_run import wandb_identity, wandb_mode

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


def wandb_ref(
    summary: RunSummary | None, wandb_dir: Path, read_config: Callable[[], Any]
) -> WandbRef | None:
    """The W&B run of a finished run: its summary's `wandb_run`; for a run written before
    lionbench recorded it, the newest W&B run under its `wandb_dir`, in the project and entity
    its config (`read_config()`) gives (with today's WANDB_PROJECT where the config left it
    unset). None: no W&B run (W&B was off), or no summary."""
    if summary is None:
        return None
    if summary.wandb_run:
        return WandbRef(summary.wandb_run, summary.wandb_mode or "online", summary.sweep_name)
    found = sorted(
        (m["time"], bool(m["offline"]), m["id"])
        for p in wandb_dir.glob("*run-*")
        if (m := WANDB_RUN_DIR.fullmatch(p.name)) and p.is_dir()
    )
    if not found:
        return None
    _, offline, run_id = found[-1]
    import yaml  # omegaconf's dependency; only old runs need it

    try:
        who = wandb_identity(read_config(), "")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    where = "/".join(str(who[k]) for k in ("entity", "project") if who.get(k))
    return WandbRef(f"{where}/{run_id}", "offline" if offline else "online", summary.sweep_name)


def join_sweep_group(sweep: str, mode: str, refs: list[WandbRef | None]) -> None:
    """Put the W&B runs of finished runs that a sweep round reuses into the sweep's group, and
    tag them `sweep:<name>`. Such a run is not trained again, so it was logged under the group of
    the sweep that trained it (or none). A W&B run has one group, changed through W&B's public
    API (`Run.update()` writes `group` and `tags`); its earlier `sweep:` tags stay. Nothing here
    fails the sweep: a problem is one line with how many runs stayed outside the group. `mode`:
    the sweep's logger.wandb.mode; `refs`: the `wandb_ref` of each run the round skips."""
    mode = wandb_mode(mode)
    if not refs or mode == "disabled":
        return
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
    unreachable = (
        "unreachable earlier in this process" if wandb_run.WandbLogger.online_failed else None
    )
    why = unreachable or wandb_run.wandb_server_unreachable()
    api = None
    if why is None:
        try:
            import wandb

            api = wandb.Api(timeout=API_TIMEOUT_S)
        except Exception as e:  # not installed, no API key, a bad WANDB_BASE_URL
            why = first_line(e, with_type=True)
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
                f"group {sweep} ({first_line(e, with_type=True)}); the sweep goes on"
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
