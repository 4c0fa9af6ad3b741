"""Config composition and validation, before any work starts.

`lionbench run` composes every config it is about to launch (each point of a multirun too) with
Hydra's compose API and checks it here, so that bad input becomes one line and exit code 2 before a
single run directory exists. Nothing in this module imports torch.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.errors import UserError, check_output_dir, first_line
from lionbench.optim.registry import impl_of, spec_of

CONF_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_NAME = "config"  # conf/config.yaml: the root config every run composes

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
OPTIONAL_VALUE_FLAGS = {"--info", "-i"}  # `--info` alone prints Hydra's default information
FLAG_VALUES = {"--cfg": "job, hydra, all", "-c": "job, hydra, all"}


def is_passthrough(flags: Sequence[str]) -> bool:
    return any(f in PASSTHROUGH_FLAGS for f in flags)


def is_multirun(flags: Sequence[str]) -> bool:
    return "-m" in flags or "--multirun" in flags


def config_dirs(flags: Sequence[str]) -> list[Path]:
    """The user's config directories (`--config-dir DIR`, `-cd DIR`): searched before conf/."""
    dirs = []
    for i, flag in enumerate(flags):
        value = flags[i + 1] if i + 1 < len(flags) else None
        if flag in ("--config-dir", "-cd"):
            if value is None:
                raise UserError(f"{flag} needs a directory (e.g. {flag} myconf)")
            path = Path(value).expanduser().absolute()
            if not path.is_dir():
                raise UserError(f"{flag} {value} is not a directory")
            dirs.append(path)
    return dirs


def choices(group: str, extra_dirs: Sequence[Path] = ()) -> list[str]:
    """Names of the configs in a config group (the yaml files of conf/<group>/ and of the
    user's config directories)."""
    names = {p.stem for d in (CONF_DIR, *extra_dirs) for p in (d / group).glob("*.yaml")}
    return sorted(names)


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/: `lb.div` and `lb.mul` derive Lion's lr and wd."""
    from omegaconf import OmegaConf

    def div(a: Any, b: Any) -> float:
        a, b = _number("numerator", a), _number("optim.ratio", b)
        if b <= 0:
            raise UserError(f"optim.ratio must be > 0, got {b} (lr = adamw.lr / ratio)")
        return decimal_div(a, b)

    def mul(a: Any, b: Any) -> float:
        return decimal_mul(_number("value", a), _number("optim.ratio", b))

    OmegaConf.register_new_resolver("lb.div", div, replace=True)
    OmegaConf.register_new_resolver("lb.mul", mul, replace=True)


def decimal_mul(a: float, b: float) -> float:
    """a x b computed on the numbers as written (their shortest reprs), then rounded once:
    0.1 x 3 is 0.3, not 0.30000000000000004, in configs, run names, summaries and W&B."""
    return float(Decimal(repr(float(a))) * Decimal(repr(float(b))))


def decimal_div(a: float, b: float) -> float:
    """a / b like `decimal_mul`: 3e-3 / 1.5 is 0.002 (binary division can land a digit off)."""
    return float(Decimal(repr(float(a))) / Decimal(repr(float(b))))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------- composing


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from config overrides; a flag that needs a
    value and has none is one line here, not Hydra's argparse usage text."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE:
                nxt = next(it, None)
                if nxt is None and arg not in OPTIONAL_VALUE_FLAGS:
                    accepted = FLAG_VALUES.get(arg, "a value")
                    raise UserError(f"{arg} needs a value (accepted: {accepted})")
                if nxt is not None:
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return flags, overrides


def seeds_first(args: Sequence[str]) -> list[str]:
    """The arguments with the `seed=` override before every other override: Hydra's basic
    sweeper runs the cartesian product with the first override varying slowest, so a multirun
    `optim=lion,adamw seed=0,1,2` runs seed by seed, every optimizer within each seed, never
    one optimizer's block after the other's (machine drift over the multirun would line up with
    the optimizer and pass for its speed). The set of runs is the same; Hydra's flags go first."""
    flags, overrides = split_args(args)
    seeds = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == "seed"]
    return [*flags, *seeds, *(o for o in overrides if o not in seeds)]


def expand_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job Hydra's basic sweeper would launch (the cartesian
    product of the sweep values; one list without --multirun), through Hydra's public
    override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as e:
        raise UserError(_parse_error_line(parser, overrides, e)) from None
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not multirun:
        if sweeps:
            key, _, value = sweeps[0].input_line.partition("=")
            raise UserError(
                f"'{sweeps[0].input_line}' is a sweep over several values: add -m (--multirun); "
                f"or quote one value that contains a comma: '{key}=\"{value}\"'"
            )
        return [list(overrides)]
    axes = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise UserError(f"'{o.input_line}': only lists, choice() and range() sweep here")
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            value = o.get_value_element_as_str()
            axes.append([key if value is None else f"{key}={value}"])
    return [list(job) for job in itertools.product(*axes)]


def _parse_error_line(parser: Any, overrides: list[str], e: Exception) -> str:
    """Name the override Hydra's grammar rejects; an unquoted value with characters the
    grammar does not take (~, non-ASCII, a space next to a quote...) gets the quoting hint."""
    from hydra.errors import HydraException

    for o in overrides:
        try:
            parser.parse_override(o)
        except HydraException:
            key, sep, value = o.partition("=")
            if not sep:
                break
            return (
                f"cannot parse override '{o}': quote a value with spaces, ~, commas or non-ASCII "
                f"characters, e.g. '{key}=\"{value}\"' (single quotes for the shell, double "
                f"quotes for Hydra)"
            )
    return f"cannot parse overrides: {first_line(e)}"


def compose(overrides: list[str], extra_dirs: Sequence[Path] = ()) -> Any:
    """Compose conf/config.yaml with overrides (and the user's config directories on the search
    path, as `--config-dir` gives them to Hydra's main), or raise UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException, MissingConfigException

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            searchpath = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in extra_dirs)}]"]
            return hydra_compose(
                config_name=CONFIG_NAME, overrides=[*overrides, *(searchpath if extra_dirs else [])]
            )
    except MissingConfigException as e:
        raise UserError(_missing_config_line(e, extra_dirs)) from None
    except HydraException as e:
        raise UserError(_composition_line(e, overrides, extra_dirs)) from None
    finally:
        GlobalHydra.instance().clear()


def _missing_config_line(e: Any, extra_dirs: Sequence[Path]) -> str:
    missing = str(getattr(e, "missing_cfg_file", "") or "")
    group, _, name = missing.rpartition("/")
    if group == "recipe_scale":
        recipe, _, scale = name.rpartition("_")
        return (
            f"recipe '{recipe}' has no scale '{scale}' (no conf/recipe_scale/{name}.yaml; "
            f"scales: {', '.join(choices('scale', extra_dirs))})"
        )
    options = getattr(e, "options", None) or (choices(group, extra_dirs) if group else [])
    if group and options:
        hint = checks.did_you_mean(name, options)
        return f"unknown {group} '{name}'{hint} (accepted: {', '.join(options)})"
    return first_line(e)


def _composition_line(e: Exception, overrides: list[str], extra_dirs: Sequence[Path]) -> str:
    text = f"{e}\n{e.__cause__ or ''}"
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in text:
        return _unknown_key_line(m.group(1), overrides, extra_dirs)
    m = re.search(r"Could not find '([^']+)'", text)
    if m:
        group, _, name = m.group(1).rpartition("/")
        options = choices(group, extra_dirs) if group else []
        if options:
            return f"unknown {group} '{name}' (accepted: {', '.join(options)})"
    return first_line(e)


def _unknown_key_line(key: str, overrides: list[str], extra_dirs: Sequence[Path]) -> str:
    """'train.stepz' -> unknown key, with the closest existing key when there is one."""
    base = compose_quiet([o for o in overrides if not _sets_key(o, key)], extra_dirs)
    parts = key.split(".")
    node, depth = base, 0
    while node is not None and depth < len(parts) - 1 and hasattr(node, "keys"):
        if parts[depth] not in node:
            break
        node, depth = node[parts[depth]], depth + 1
    parent, unknown = ".".join(parts[:depth]), parts[depth]
    siblings = [str(k) for k in node] if node is not None and hasattr(node, "keys") else []
    prefix = f"{parent}." if parent else ""
    hint = checks.did_you_mean(unknown, siblings, prefix=prefix)
    accepted = f" (keys under '{parent or 'the root'}': {', '.join(siblings)})" if siblings else ""
    return (
        f"unknown config key '{prefix}{unknown}'{hint}{accepted}; to add a new key write +{key}=..."
    )


def compose_quiet(overrides: list[str], extra_dirs: Sequence[Path] = ()) -> Any | None:
    try:
        return compose(overrides, extra_dirs)
    except UserError:
        return None


def _sets_key(override: str, key: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == key


# ---------------------------------------------------------------------------------- validating


def check_structure(cfg: Any, overrides: Sequence[str], extra_dirs: Sequence[Path] = ()) -> None:
    """The composed config keeps the shape of its schema: the same config composed from the
    group choices alone (recipe=..., optim=...). A section cannot be deleted (`~train`) or
    replaced by a value (`recipe.model=5`), nor a value by a section, so that every key the
    code reads exists with its kind, whatever key a recipe or config group adds later."""
    groups = {g for d in (CONF_DIR, *extra_dirs) for g in _group_names(d)}
    choices_only = tuple(o for o in overrides if o.lstrip("+").split("=", 1)[0] in groups)
    reference = _reference(choices_only, tuple(extra_dirs))
    if reference is not None:
        _same_shape(cfg, reference, "")


def _group_names(conf_dir: Path) -> list[str]:
    return [p.name for p in conf_dir.iterdir() if p.is_dir()] if conf_dir.is_dir() else []


_REFERENCES: dict[tuple[tuple[str, ...], tuple[Path, ...]], Any] = {}


def _reference(choices_only: tuple[str, ...], extra_dirs: tuple[Path, ...]) -> Any | None:
    key = (choices_only, extra_dirs)
    if key not in _REFERENCES:
        _REFERENCES[key] = compose_quiet(list(choices_only), extra_dirs)
    return _REFERENCES[key]


def _same_shape(cfg: Any, reference: Any, prefix: str) -> None:
    from omegaconf import DictConfig

    for key in reference:
        full = f"{prefix}{key}"
        if key not in cfg.keys():  # noqa: SIM118 (`in cfg` is False for a mandatory ???)
            first = (
                next(iter(reference[key]), "key")
                if isinstance(reference._get_node(key), DictConfig)
                else None
            )
            accepted = f"change its keys, e.g. {full}.{first}=..." if first else f"{full}=..."
            reader = "lionbench"
            if full.startswith("optim.") and isinstance(reference.get("name"), str):
                reader = f"optim={reference.name}"  # the optimizer's registry entry reads it
            raise UserError(f"'~{full}' deletes {full}, but {reader} needs {full} ({accepted})")
        want_section = isinstance(reference._get_node(key), DictConfig)
        node = cfg._get_node(key)
        if want_section and not isinstance(node, DictConfig):
            subkeys = ", ".join(str(k) for k in reference[key])
            raise UserError(
                f"{full} is a section of keys ({subkeys}), got {node._value()!r}: set one of "
                f"them, e.g. {full}.{next(iter(reference[key]), 'key')}=..."
            )
        if not want_section and isinstance(node, DictConfig):
            raise UserError(f"{full} must be a single value, got a section of keys")
        if want_section:
            _same_shape(node, reference[key], f"{full}.")


def interpolation_inputs(cfg: Any) -> dict[str, tuple[str, list[str]]]:
    """Each interpolated key and the keys it is computed from (optim.lr: [recipe.adamw.lr,
    optim.ratio]), read before resolving, so that a bad input is named, not what it feeds."""
    from omegaconf import DictConfig, OmegaConf

    out: dict[str, tuple[str, list[str]]] = {}

    def walk(node: Any) -> None:
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child)
            elif OmegaConf.is_interpolation(node, key):
                parent = node._get_full_key("")
                raw = str(child._value())
                refs = re.findall(r"\$\{(\.?[A-Za-z_][\w.]*)\}", raw)
                out[child._get_full_key("")] = (
                    raw,
                    [
                        f"{parent}{r}" if r.startswith(".") and parent else r.lstrip(".")
                        for r in refs
                    ],
                )

    walk(cfg)
    return out


def check_interpolated_inputs(cfg: Any, inputs: dict[str, tuple[str, list[str]]]) -> None:
    """The inputs of lionbench's resolvers (Lion's lr = recipe.adamw.lr / optim.ratio) must be
    numbers: say which one is not, before the resolver sees it."""
    from omegaconf import OmegaConf

    for target, (raw, refs) in inputs.items():
        if "${lb." not in raw:
            continue
        for ref in refs:
            value = OmegaConf.select(cfg, ref, default=None, throw_on_missing=False)
            if value is not None and not _is_number(value):
                raise UserError(
                    f"{ref} must be a number ({target} is computed from it), got {value!r}"
                )


def _named_at_source(e: UserError, inputs: dict[str, tuple[str, list[str]]]) -> UserError:
    """'optim.lr must be ...' where optim.lr is `${recipe.adamw.lr}`: name recipe.adamw.lr."""
    text = str(e)
    for target, (_, refs) in inputs.items():
        if len(refs) == 1 and re.match(rf"{re.escape(target)}\b(?![.\w])", text):
            return UserError(f"{refs[0]}{text[len(target) :]} ({target} is set from it)")
    return e


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(cfg: Any, extra_dirs: Sequence[Path] = ()) -> None:
    """Check a composed config; raise UserError naming the bad value and what is accepted."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    inputs = interpolation_inputs(cfg)
    check_interpolated_inputs(cfg, inputs)
    try:
        OmegaConf.resolve(cfg)
    except UserError:
        raise
    except OmegaConfBaseException as e:
        cause = _user_error_in_chain(e)
        raise UserError(str(cause) if cause else f"config error: {first_line(e)}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(
            f"missing value for {missing[0]} (set it on the command line: {missing[0]}=...)"
        )
    try:
        _validate_run(cfg, extra_dirs)
        validate_optim(cfg.optim)
        _validate_train(cfg)
    except UserError as e:
        raise _named_at_source(e, inputs) from None


def _validate_run(cfg: Any, extra_dirs: Sequence[Path]) -> None:
    checks.choice(cfg.recipe.name, "recipe", choices("recipe", extra_dirs))
    module = cfg.recipe.get("module")
    if module is not None and not (isinstance(module, str) and module):
        raise UserError(f"recipe.module must be an importable module name, got {module!r}")
    checks.choice(cfg.data.source, f"data (for recipe={cfg.recipe.name})", cfg.recipe.data_sources)
    if "eval_seed" in cfg.data:
        checks.integer(cfg.data.eval_seed, "data.eval_seed", low=0)
    if "workers" in cfg.data:  # DataLoader worker processes; 0 loads in the training process
        checks.integer(cfg.data.workers, "data.workers", low=0)
    checks.integer(cfg.seed, "seed", low=0)
    _device(cfg.device)
    checks.choice(cfg.precision, "precision", PRECISIONS)
    checks.boolean(cfg.compile, "compile")
    if cfg.channels_last != "auto":
        checks.boolean(cfg.channels_last, "channels_last (accepted: auto, true, false)")
    checks.choice(cfg.logger.wandb.mode, "logger.wandb.mode", WANDB_MODES)
    _results_dir(cfg.results_dir)


def validate_optim(optim: Any) -> None:
    """The optimizer's name (or `_target_`), implementation and every hyperparameter its
    registry entry lists, each checked by the registry's own check."""
    spec = spec_of(optim)
    spec.impl(impl_of(optim))
    for key, check in spec.hyperparams.items():
        if key not in optim:
            raise UserError(
                f"optim={spec.name} needs optim.{key} (set it in its YAML or on the command line: "
                f"+optim.{key}=...)"
            )
        check(optim[key], f"optim.{key}")


def _validate_train(cfg: Any) -> None:
    s = cfg.sched
    checks.choice(s.name, "sched", SCHEDULES)
    checks.integer(s.warmup_steps, "sched.warmup_steps", low=0)
    checks.real(s.final_lr_frac, "sched.final_lr_frac", low=0.0, high=1.0)
    t = cfg.train
    checks.integer(t.steps, "train.steps", low=1)
    checks.integer(t.batch_size, "train.batch_size", low=1)
    checks.integer(t.grad_accum, "train.grad_accum", low=1)
    if t.batch_size % t.grad_accum:
        raise UserError(
            f"train.batch_size ({t.batch_size}) must be divisible by "
            f"train.grad_accum ({t.grad_accum})"
        )
    checks.real(t.grad_clip, "train.grad_clip", low=0.0)
    for key in ("log_interval", "eval_interval", "eval_batches"):
        checks.integer(t[key], f"train.{key}", low=1)
    if t.target is not None:
        checks.real(t.target, "train.target")
    if not isinstance(t.target_metric, str) or not t.target_metric:
        raise UserError(f"train.target_metric must be a metric name, got {t.target_metric!r}")
    if t.ema_decay is not None:
        checks.unit_interval(t.ema_decay, "train.ema_decay")
    if t.diverge_loss is not None:
        checks.positive(t.diverge_loss, "train.diverge_loss")
    checks.integer(cfg.timing.warmup_steps, "timing.warmup_steps", low=0)
    checks.integer(cfg.timing.opt_step_every, "timing.opt_step_every", low=1)
    checks.integer(cfg.checkpoint.interval, "checkpoint.interval (0: only on a signal)", low=0)
    checks.boolean(cfg.checkpoint.keep, "checkpoint.keep")


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
        checks.integer(node[key], f"{prefix}.{key}", low=1)


def _device(device: Any) -> None:
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"unknown device {device!r} (accepted: auto, cpu, cuda, cuda:N)")


def _results_dir(path: Any) -> None:
    if not isinstance(path, str) or not path:
        raise UserError(f"results_dir must be a path, got {path!r}")
    check_output_dir(Path(path).expanduser(), "results_dir")
