"""Config composition and validation, before any work starts.

`lionbench run` composes every config it is about to launch (each point of a multirun too) with
Hydra's compose API and checks it here, so that bad input becomes one line and exit code 2 before a
single run directory exists. Nothing in this module imports torch.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lionbench.errors import UserError, check_output_dir

CONF_DIR = Path(__file__).resolve().parent / "conf"

OPTIMIZER_IMPLS: dict[str, tuple[str, ...]] = {
    "lion": (
        "lionbench",
        "lionbench_bf16",
        "lionbench_compiled",
        "lionbench_eager",
        "lion_pytorch_foreach",
        "lion_pytorch",
        "lion_pytorch_triton",
    ),
    "adamw": ("fused", "foreach", "loop"),
}
SCHEDULES = ("cosine", "linear", "rsqrt", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
WANDB_MODES = ("auto", "online", "offline", "disabled")
# Hydra flags that only print or complete; they get Hydra's own handling, with no pre-check.
PASSTHROUGH_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--cfg",
    "-c",
    "--config-dir",
    "-cd",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--experimental-rerun",
}
# Hydra flags that take a value as the next argument.
FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}


def is_passthrough(flags: Sequence[str]) -> bool:
    return any(f in PASSTHROUGH_FLAGS for f in flags)


def is_multirun(flags: Sequence[str]) -> bool:
    return "-m" in flags or "--multirun" in flags


def choices(group: str) -> list[str]:
    """Names of the configs in a config group (the yaml files of conf/<group>/)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/: `lb.div` and `lb.mul` derive Lion's lr and wd."""
    from omegaconf import OmegaConf

    def div(a: Any, b: Any) -> float:
        a, b = _number("numerator", a), _number("optim.ratio", b)
        if b <= 0:
            raise UserError(f"optim.ratio must be > 0, got {b} (lr = adamw.lr / ratio)")
        return a / b

    def mul(a: Any, b: Any) -> float:
        return _number("value", a) * _number("optim.ratio", b)

    OmegaConf.register_new_resolver("lb.div", div, replace=True)
    OmegaConf.register_new_resolver("lb.mul", mul, replace=True)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------- composing


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from config overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE:
                nxt = next(it, None)
                if nxt is not None:
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return flags, overrides


def expand_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job Hydra would launch (one list without --multirun)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise UserError(f"cannot parse overrides: {_first_line(e)}") from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not multirun:
        if sweeps:
            raise UserError(
                f"'{sweeps[0].input_line}' is a sweep over several values: add -m (--multirun)"
            )
        return [list(overrides)]
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(job) for batch in batches for job in batch]


def compose(overrides: list[str]) -> Any:
    """Compose conf/config.yaml with overrides, as Hydra's main would, or raise UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except MissingConfigException as e:
        raise UserError(_missing_config_line(e)) from None
    except HydraException as e:
        raise UserError(_composition_line(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def _missing_config_line(e: Any) -> str:
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    group, _, name = missing.rpartition("/")
    if group == "recipe_scale":
        recipe, _, scale = name.rpartition("_")
        return (
            f"recipe '{recipe}' has no scale '{scale}' "
            f"(no conf/recipe_scale/{name}.yaml; scales: {', '.join(choices('scale'))})"
        )
    options = getattr(e, "options", None) or (choices(group) if group else [])
    if group and options:
        hint = _did_you_mean(name, options)
        return f"unknown {group} '{name}'{hint} (accepted: {', '.join(options)})"
    return _first_line(e)


def _composition_line(e: Exception, overrides: list[str]) -> str:
    text = f"{e}\n{e.__cause__ or ''}"
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in text:
        return _unknown_key_line(m.group(1), overrides)
    m = re.search(r"Could not find '([^']+)'", text)
    if m:
        group, _, name = m.group(1).rpartition("/")
        options = choices(group) if group else []
        if options:
            return f"unknown {group} '{name}' (accepted: {', '.join(options)})"
    return _first_line(e)


def _unknown_key_line(key: str, overrides: list[str]) -> str:
    """'train.stepz' -> unknown key, with the closest existing key when there is one."""
    base = compose_quiet([o for o in overrides if not _sets_key(o, key)])
    parts = key.split(".")
    node, depth = base, 0
    while node is not None and depth < len(parts) - 1 and hasattr(node, "keys"):
        if parts[depth] not in node:
            break
        node, depth = node[parts[depth]], depth + 1
    parent, unknown = ".".join(parts[:depth]), parts[depth]
    siblings = [str(k) for k in node] if node is not None and hasattr(node, "keys") else []
    prefix = f"{parent}." if parent else ""
    hint = _did_you_mean(unknown, siblings, prefix=prefix)
    accepted = f" (keys under '{parent or 'the root'}': {', '.join(siblings)})" if siblings else ""
    return (
        f"unknown config key '{prefix}{unknown}'{hint}{accepted}; to add a new key write +{key}=..."
    )


def compose_quiet(overrides: list[str]) -> Any | None:
    try:
        return compose(overrides)
    except UserError:
        return None


def _sets_key(override: str, key: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == key


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


# ---------------------------------------------------------------------------------- validating


def validate(cfg: Any) -> None:
    """Check a composed config; raise UserError naming the bad value and what is accepted."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
    except UserError:
        raise
    except OmegaConfBaseException as e:
        cause = _user_error_in_chain(e)
        raise UserError(str(cause) if cause else f"config error: {_first_line(e)}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(
            f"missing value for {missing[0]} (set it on the command line: {missing[0]}=...)"
        )

    _choice(cfg.recipe.name, "recipe", choices("recipe"))
    _choice(cfg.data.source, f"data (for recipe={cfg.recipe.name})", cfg.recipe.data_sources)
    if "eval_seed" in cfg.data:
        _integer(cfg.data.eval_seed, "data.eval_seed", low=0)
    if "workers" in cfg.data:  # DataLoader worker processes; 0 loads in the training process
        _integer(cfg.data.workers, "data.workers", low=0)
    _integer(cfg.seed, "seed", low=0)
    _device(cfg.device)
    _choice(cfg.precision, "precision", PRECISIONS)
    _boolean(cfg.compile, "compile")
    _choice(cfg.logger.wandb.mode, "logger.wandb.mode", WANDB_MODES)
    _results_dir(cfg.results_dir)

    o = cfg.optim
    _choice(o.name, "optim", tuple(OPTIMIZER_IMPLS))
    _choice(o.impl, f"optim.impl (for optim={o.name})", OPTIMIZER_IMPLS[o.name])
    _real(o.lr, "optim.lr", low=0.0, low_open=True)
    _real(o.weight_decay, "optim.weight_decay", low=0.0)
    betas = o.betas
    if not (hasattr(betas, "__len__") and len(betas) == 2):
        raise UserError(f"optim.betas must be two numbers [beta1, beta2], got {betas}")
    for i, b in enumerate(betas):
        _real(b, f"optim.betas[{i}]", low=0.0, high=1.0, high_open=True)
    if o.name == "lion":
        _real(o.ratio, "optim.ratio", low=0.0, low_open=True)
    if "eps" in o:
        _real(o.eps, "optim.eps", low=0.0, low_open=True)

    s = cfg.sched
    _choice(s.name, "sched", SCHEDULES)
    _integer(s.warmup_steps, "sched.warmup_steps", low=0)
    _real(s.final_lr_frac, "sched.final_lr_frac", low=0.0, high=1.0)

    t = cfg.train
    _integer(t.steps, "train.steps", low=1)
    _integer(t.batch_size, "train.batch_size", low=1)
    _integer(t.grad_accum, "train.grad_accum", low=1)
    if t.batch_size % t.grad_accum:
        raise UserError(
            f"train.batch_size ({t.batch_size}) must be divisible by "
            f"train.grad_accum ({t.grad_accum})"
        )
    _real(t.grad_clip, "train.grad_clip", low=0.0)
    for key in ("log_interval", "eval_interval", "eval_batches"):
        _integer(t[key], f"train.{key}", low=1)
    if t.target is not None:
        _real(t.target, "train.target")
    if not isinstance(t.target_metric, str) or not t.target_metric:
        raise UserError(f"train.target_metric must be a metric name, got {t.target_metric!r}")
    if t.ema_decay is not None:
        _real(t.ema_decay, "train.ema_decay", low=0.0, high=1.0, high_open=True)
    if t.diverge_loss is not None:
        _real(t.diverge_loss, "train.diverge_loss", low=0.0, low_open=True)
    _integer(cfg.timing.warmup_steps, "timing.warmup_steps", low=0)
    _integer(cfg.timing.opt_step_every, "timing.opt_step_every", low=1)


def _user_error_in_chain(e: BaseException) -> UserError | None:
    seen: set[int] = set()
    node: BaseException | None = e
    while node is not None and id(node) not in seen:
        if isinstance(node, UserError):
            return node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def check_positive_ints(node: Any, keys: Iterable[str], prefix: str) -> None:
    """Recipes use this for their size settings: each `prefix.key` must be an integer >= 1."""
    for key in keys:
        _integer(node[key], f"{prefix}.{key}", low=1)


def _choice(value: Any, name: str, accepted: Iterable[str]) -> None:
    accepted = list(accepted)
    if value not in accepted:
        hint = _did_you_mean(str(value), accepted)
        raise UserError(f"unknown {name} '{value}'{hint} (accepted: {', '.join(accepted)})")


def _integer(value: Any, name: str, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise UserError(f"{name} must be >= {low}, got {value}")


def _boolean(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")


def _real(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value < low or (low_open and value == low))
    too_high = high is not None and (value > high or (high_open and value == high))
    if not (too_low or too_high):
        return
    if high is None:
        accepted = f"{'>' if low_open else '>='} {low:g}"
    elif low is None:
        accepted = f"{'<' if high_open else '<='} {high:g}"
    else:
        accepted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise UserError(f"{name} must be {accepted}, got {value}")


def _device(device: Any) -> None:
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"unknown device {device!r} (accepted: auto, cpu, cuda, cuda:N)")


def _results_dir(path: Any) -> None:
    if not isinstance(path, str) or not path:
        raise UserError(f"results_dir must be a path, got {path!r}")
    check_output_dir(Path(path).expanduser(), "results_dir")
