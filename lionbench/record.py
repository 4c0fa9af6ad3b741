"""The run record: what identifies a run, how it ended (`Status`) and what came of it
(`RunSummary`, summary.json's schema, versioned). The loop, the run layer, sweeps, W&B and the
report all speak it; `run/rundir.py` reads and writes its files.

One definition of what is *not* part of a run's identity (`NOT_IDENTITY`) serves the run
directory's name, the report's settings and sweeps. `RunSummary.from_dict` accepts every schema
written so far (schema 1 had no version key), so runs already on disk keep working. Nothing
here imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from lionbench.files import json_safe
from lionbench.optim.registry import OPTIMIZERS

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)

# Keys that decide where results go or how they are reported, not what is computed: changing
# them never re-runs anything, and runs that differ only in them are the same run.
NOT_IDENTITY = ("results_dir", "logger", "sweep_name", "checkpoint")
# Top-level keys added after runs were first written, with the default that reproduces the
# earlier behaviour: at that default they are left out of the identity, so that runs already on
# disk keep their directory (a run at the default computes what the earlier run computed).
ADDED_KEY_DEFAULTS = {"channels_last": "auto"}
# Keys whose whole effect is recorded in other keys: a size of the ladder in recipe.model, a
# data budget in train.steps. They are left out of the identity, so that `recipe.size=l2w64` and
# the same model spelled out share a directory, and runs written before the keys existed keep
# theirs.
DERIVED_KEYS = {"recipe": ("size", "sizes", "data_per_param"), "train": ("budget",)}
# Keys that make an *arm* (an optimizer setting, over seeds) within a *setting*.
ARM_KEYS = ("optim", "seed")


class Status(str, Enum):
    """What became of a run. The first five are written by runs; the others are what a reader
    concludes from a directory (or a launcher from a job) that has no usable summary."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PARTIAL = "partial"  # a directory without a finished summary (killed, or still running)
    NOT_STARTED = "not_started"  # set up, no step kept: killed before step 1 (or setting up)
    MISSING = "missing"  # no directory at all
    CORRUPT = "corrupt"  # files that cannot be read
    BAD_INPUT = "bad_input"  # refused before training

    def __str__(self) -> str:
        return self.value

    # The same as the plain string everywhere (dict keys, f-strings), on every Python version.
    __hash__ = str.__hash__

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def finished(self) -> bool:
        """A run with a final result: it is skipped when asked for again."""
        return self in (Status.COMPLETED, Status.DIVERGED)

    @property
    def problem(self) -> bool:
        """A run that produced no result (a sweep exits 1 when one of its runs is here)."""
        return self in (Status.FAILED, Status.PARTIAL, Status.NOT_STARTED, Status.MISSING,
                        Status.CORRUPT, Status.BAD_INPUT)  # fmt: skip

    @classmethod
    def parse(cls, value: Any) -> Status:
        try:
            return cls(value)
        except ValueError:
            return cls.CORRUPT


# ------------------------------------------------------------------------------------- identity


def identity(cfg: dict[str, Any], device_type: str) -> dict[str, Any]:
    """What a run computes: the config without `NOT_IDENTITY` and without the recipe's
    baselines of optimizers the run does not use (changing SGD's baseline never re-runs a Lion
    run, and adding an optimizer to the registry keeps every existing run's directory)."""
    ident = {
        k: v
        for k, v in cfg.items()
        if k not in NOT_IDENTITY and not (k in ADDED_KEY_DEFAULTS and v == ADDED_KEY_DEFAULTS[k])
    }
    ident = without_derived(ident)
    recipe = ident.get("recipe")
    if isinstance(recipe, dict):
        used = baselines_used(cfg.get("optim") or {})
        ident["recipe"] = {k: v for k, v in recipe.items() if k not in OPTIMIZERS or k in used}
    ident["device"] = device_type  # a CPU result is not a GPU result
    return ident


def without_derived(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config without `DERIVED_KEYS` (a copy of the blocks that held them)."""
    out = dict(cfg)
    for block, keys in DERIVED_KEYS.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in keys}
    return out


def baselines_used(optim: dict[str, Any]) -> set[str]:
    """The recipe baseline blocks an optimizer config reads: its own and, for Lion and Muon,
    AdamW's."""
    name = optim.get("name")
    spec = OPTIMIZERS.get(name) if optim.get("_target_") is None else None
    return spec.baselines if spec else {str(name)}


def setting_config(cfg: dict[str, Any], optimizer_names: tuple[str, ...]) -> dict[str, Any]:
    """What runs compared against each other must share: the identity without the arm keys and
    without the recipe's per-optimizer baselines (`recipe.adamw`, `recipe.lion`, ...)."""
    rest = {k: v for k, v in without_derived(cfg).items() if k not in NOT_IDENTITY + ARM_KEYS}
    recipe = rest.get("recipe")
    if isinstance(recipe, dict):
        rest["recipe"] = {k: v for k, v in recipe.items() if k not in optimizer_names}
    return rest


def digest(value: Any, length: int = 10) -> str:
    return text_digest(json.dumps(value, sort_keys=True, default=str), length)


def text_digest(text: str, length: int = 10) -> str:
    """`digest` of a value already written as its canonical JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# Keys of an optimizer's config that are not hyperparameters shown in a run's name.
NAME_SKIPS = frozenset({"name", "impl", "lr", "weight_decay", "ratio", "wd_ratio", "_target_"})
NAME_ABBREVIATIONS = {"betas": "b", "momentum": "mom", "nesterov": "nest"}


def run_name(cfg: dict[str, Any], device_type: str) -> str:
    """`<scale>[-<size>]-<optim>-lr..-wd..[-b0.95_0.98..]-s<seed>-<identity hash>`: readable and
    unique. Hyperparameters appear when they differ from the recipe's block for the optimizer
    (`recipe.lion.betas`) or, without one, from the registry's defaults, so the usual name stays
    short and a betas sweep's directories tell apart at a glance."""
    o = cfg["optim"]
    extra = "".join(
        f"-{NAME_ABBREVIATIONS.get(k, k)}{_name_value(v)}" for k, v in _non_default(cfg)
    )
    size = (cfg.get("recipe") or {}).get("size")
    scale = f"{cfg['scale']}-{size}" if size else cfg["scale"]
    return (
        f"{scale}-{o['name']}-lr{o['lr']:.3g}-wd{o['weight_decay']:.3g}{extra}"
        f"-s{cfg['seed']}-{digest(identity(cfg, device_type))}"
    )


def _non_default(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    """The optimizer's hyperparameters that differ from its recipe block or registry defaults."""
    o = cfg["optim"]
    spec = OPTIMIZERS.get(o["name"])
    recipe = cfg.get("recipe") or {}
    block = recipe.get(o["name"])
    usual = {**(spec.defaults if spec else {}), **(block if isinstance(block, dict) else {})}
    for other in spec.also_reads if spec else ():  # Muon's adamw_lr: recipe.adamw.lr
        usual.update({f"{other}_{k}": v for k, v in (recipe.get(other) or {}).items()})
    return [
        (k, v)
        for k, v in sorted(o.items())
        if k not in NAME_SKIPS and k in usual and _plain(v) != _plain(usual[k])
    ]


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _name_value(value: Any) -> str:
    """A value as a path-safe word: sequences joined by `_`, numbers in `g` format."""
    if isinstance(value, list | tuple):
        return "_".join(_name_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_").replace(" ", "")


# -------------------------------------------------------------------------------------- summary


@dataclass
class RunSummary:
    """summary.json. Fields are grouped as: what ran, where and when, and what came of it."""

    status: Status = Status.RUNNING
    error: str | None = None
    # what ran
    recipe: str | None = None
    scale: str | None = None
    data: str | None = None
    optim: str | None = None
    impl: str | None = None
    optim_target: str | None = None  # the class of a user `_target_` optimizer
    lr: float | None = None
    weight_decay: float | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)  # betas, eps, momentum, ...
    betas: list[float] | None = None  # schema 1 had only this; kept for its readers
    ratio: float | None = None  # lr/wd ratio to the baseline (ratio-linked optimizers)
    wd_ratio: float | None = None
    seed: int | None = None
    sched: str | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    planned_steps: int | None = None
    precision: str | None = None
    compile: bool | None = None
    sweep_name: str | None = None
    # where and when
    run_dir: str | None = None
    device: str | None = None
    device_name: str | None = None
    torch_version: str | None = None
    lionbench_version: str | None = None
    git_rev: str | None = None
    hostname: str | None = None
    pid: int | None = None
    slurm_job_id: str | None = None  # the SLURM job that trained it (the last one, if requeued)
    slurm_log: str | None = None  # that job's log (submitit's stderr file, or sbatch's)
    wandb_run: str | None = None  # W&B's run path, [entity/]project/id (None: W&B off)
    wandb_mode: str | None = None  # online | offline: how that W&B run was logged
    started_at: str | None = None
    ended_at: str | None = None
    wall_s: float | None = None
    resumed_from_step: int | None = None
    resumes: int | None = None
    interrupted_by: int | None = None
    # what came of it
    steps: int | None = None
    diverged_at_step: int | None = None
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    best_val_step: int | None = None
    final_val_metrics: dict[str, float] | None = None
    final_ema_val_metrics: dict[str, float] | None = None
    loss_floor: float | None = None  # exact Bayes-optimal loss on the eval set used
    loss_floor_process: float | None = None  # the process's entropy (builtin tokens)
    gap_to_floor: float | None = None
    target_metric: str | None = None
    target: float | None = None
    steps_to_target: int | None = None
    time_to_target_s: float | None = None
    steps_per_s: float | None = None
    examples_per_s: float | None = None
    tokens_per_s: float | None = None
    flops_per_example: float | None = None
    mfu: float | None = None
    opt_step_ms: float | None = None
    opt_step_ms_samples: int | None = None
    train_time_s: float | None = None
    compile_s: float | None = None  # warm-step time beyond the steady rate (not in train_time_s)
    timed_steps: int | None = None
    # what the timed window shared its machine with (loop/exposure.py): other processes' CPU
    # cores, load average, other GPU processes, SM clock; contended runs leave speed verdicts
    timing_exposure: dict[str, Any] | None = None
    timing_contended: bool | None = None
    timing_note: str | None = None  # why it was contended
    peak_mem_bytes: int | None = None
    peak_mem_kind: str | None = None
    optimizer_state_bytes: int | None = None
    expected_state_bytes: int | None = None  # the registry's, for the trainable parameters
    # a composite optimizer's split: per part's optimizer, its tensors, elements and names
    optimizer_parts: dict[str, Any] | None = None
    n_params: int | None = None
    init_state_hash: str | None = None
    first_batch_hash: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    data_info: dict[str, Any] = field(default_factory=dict)
    # the resolved config, as config.yaml holds it: one file says what ran and what came of it
    # (the report reads it here; 1,000 YAML parses were its largest cost)
    config: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer writer, kept as read

    def update(self, **values: Any) -> RunSummary:
        """Set fields by name; an unknown name is a bug, not data."""
        for key, value in values.items():
            if key not in _FIELDS or key == "extra":
                raise AttributeError(f"RunSummary has no field {key!r}")
            setattr(self, key, Status(value) if key == "status" else value)
        return self

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["status"] = self.status.value
        return {**out, **self.extra}

    def to_json(self) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """Any readable schema; schema 1 (no `schema_version`) maps field for field."""
        version = data.get("schema_version", 1)
        if version not in READABLE_SCHEMAS:
            raise ValueError(
                f"summary schema {version} is newer than this lionbench reads "
                f"({', '.join(map(str, READABLE_SCHEMAS))})"
            )
        known = {k: v for k, v in data.items() if k in _FIELDS and k != "extra"}
        summary = cls(**known, extra={k: v for k, v in data.items() if k not in _FIELDS})
        summary.status = Status.parse(data.get("status"))
        if version == 1 and not summary.hyperparams and summary.betas is not None:
            summary.hyperparams = {"betas": list(summary.betas)}
        summary.schema_version = int(version)
        return summary

    @property
    def finished(self) -> bool:
        return self.status.finished


_FIELDS = {f.name for f in dataclasses.fields(RunSummary)}
