"""Checking a composed config before any work starts: its shape against the schema, the
inputs of interpolations, and every value the code reads (one line naming what is accepted).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.config.compose import CONF_DIR, NEW_KEYS, choices, compose_quiet, key_hint
from lionbench.errors import UserError, check_output_dir, first_line
from lionbench.optim.libraries import accepts_new_keys
from lionbench.optim.registry import META_KEYS, impl_of, spec_of

SCHEDULES = ("cosine", "linear", "rsqrt", "constant")
# Bounds on counts, so that a typo (train.steps=1e12) is refused rather than run for centuries
MAX_STEPS = 10**9  # steps and intervals: 30 years at one step a second
MAX_SEED = 2**32 - 1  # NumPy's seed range; torch's is wider
MAX_WORKERS = 256  # DataLoader worker processes
MAX_EVAL_EXAMPLES = 100_000  # a fixed eval set: twice ImageNet's val split
PRECISIONS = ("auto", "fp32", "bf16")
WANDB_MODES = ("auto", "online", "offline", "disabled")


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
        _no_new_keys(cfg, overrides, reference, groups)


def _no_new_keys(cfg: Any, overrides: Sequence[str], reference: Any, groups: set[str]) -> None:
    """`+train.stpes=5` adds a key no code reads: the run would go ahead, with train.steps as
    before, in a directory of its own. A `+key` is taken only where new keys mean something:
    the keyword arguments of a library's or a `_target_` optimizer (and Hydra's own `hydra.*`)."""
    from omegaconf import OmegaConf

    for o in overrides:
        if not o.startswith("+"):
            continue
        key = o.lstrip("+").split("=", 1)[0]
        if "/" in key or key in groups or key.split(".")[0] == "hydra":
            continue  # a config group, or Hydra's settings
        if OmegaConf.select(reference, key, default=_ABSENT) is not _ABSENT:
            continue  # a key the schema has (`+` on it is Hydra's business)
        if key.startswith("optim.") and accepts_new_keys(cfg.optim):
            continue  # a library's or `_target_` class's keyword (checked against its signature)
        name, hint = key_hint(reference, key)
        raise UserError(f"'{o}' adds '{name}', a key no config of lionbench reads{hint}"
                        f"{NEW_KEYS}")  # fmt: skip


_ABSENT = object()


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
        checks.integer(cfg.data.workers, "data.workers", low=0, high=MAX_WORKERS)
    checks.integer(cfg.seed, "seed", low=0, high=MAX_SEED)
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
    known = {*META_KEYS, *spec.hyperparams}
    unknown = [str(k) for k in optim if k not in known] if spec.target is None else []
    if unknown:  # a registry optimizer ignores what it does not list: say so, do not run
        raise UserError(
            f"optim.{unknown[0]} is not a setting of optim={spec.name}"
            f"{checks.did_you_mean(unknown[0], spec.hyperparams, prefix='optim.')} (its settings: "
            f"{', '.join(spec.hyperparams)}; its implementations: optim.impl="
            f"{'|'.join(spec.impls)})"
        )
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
    checks.integer(t.steps, "train.steps", low=1, high=MAX_STEPS)
    checks.integer(t.batch_size, "train.batch_size", low=1)
    checks.integer(t.grad_accum, "train.grad_accum", low=1)
    if t.batch_size % t.grad_accum:
        raise UserError(
            f"train.batch_size ({t.batch_size}) must be divisible by "
            f"train.grad_accum ({t.grad_accum})"
        )
    checks.real(t.grad_clip, "train.grad_clip", low=0.0)
    for key in ("log_interval", "eval_interval"):
        checks.integer(t[key], f"train.{key}", low=1, high=MAX_STEPS)
    # `all`: the whole validation split, for recipes whose YAML says they can (gpt2)
    if t.eval_batches == "all" and cfg.recipe.get("eval_all") is not True:
        raise UserError(
            f"train.eval_batches=all (the whole validation split) is not supported by "
            f"recipe={cfg.recipe.name}: set a number of batches of train.batch_size"
        )
    if t.eval_batches != "all":
        accepted = " (or all)" if cfg.recipe.get("eval_all") is True else ""
        checks.integer(t.eval_batches, f"train.eval_batches{accepted}", low=1, high=MAX_STEPS)
        if t.eval_batches * t.batch_size > MAX_EVAL_EXAMPLES:
            whole = "; train.eval_batches=all evaluates a whole split" if accepted else ""
            raise UserError(
                f"train.eval_batches x train.batch_size = {t.eval_batches * t.batch_size:,} eval "
                f"examples, more than {MAX_EVAL_EXAMPLES:,} (held in memory and evaluated at "
                f"every train.eval_interval){whole}"
            )
    if t.target is not None:
        checks.real(t.target, "train.target")
    if not isinstance(t.target_metric, str) or not t.target_metric:
        raise UserError(f"train.target_metric must be a metric name, got {t.target_metric!r}")
    if t.ema_decay is not None:
        checks.unit_interval(t.ema_decay, "train.ema_decay")
    if t.diverge_loss is not None:
        checks.positive(t.diverge_loss, "train.diverge_loss")
    checks.integer(cfg.timing.warmup_steps, "timing.warmup_steps", low=0, high=MAX_STEPS)
    checks.integer(cfg.timing.opt_step_every, "timing.opt_step_every", low=1, high=MAX_STEPS)
    checks.integer(cfg.checkpoint.interval, "checkpoint.interval (0: only on a signal)", low=0,
                   high=MAX_STEPS)  # fmt: skip
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
