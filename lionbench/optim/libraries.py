"""Optimizer libraries by name: any optimizer timm, pytorch_optimizer or heavyball makes, as
`optim=timm optim.opt=adopt`, `optim=pytorch_optimizer optim.opt=soap`, `optim=heavyball
optim.opt=SOAP`, its keyword arguments as `+optim.KEY=VALUE`.

`optim.name` stays the registry's key (the library), `optim.opt` names the library's optimizer,
as timm's own factory calls it (`create_optimizer_v2(opt=...)`). The name is checked against the
library's list and every keyword against the constructor's signature (`inspect.signature`) when
the config is validated, before anything is written: a misspelling is one line naming the close
names or the signature's keywords; then the optimizer is built once over a 2x2 tensor, so that a
value the library refuses is one line too. lionbench's two parameter groups (decay / no decay)
go to the library's class; lr and weight_decay are `optim.lr` and `optim.weight_decay` (the
recipe's AdamW baseline by default: untuned for the optimizer). What it holds is measured
(`optimizer_state_bytes`), never modelled (`expected_state_bytes` is None, as for a `_target_`
class). The libraries are the `optimizers` extra; nothing here imports torch or a library at
module level, nor the registry (which imports this module).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lionbench import checks
from lionbench.errors import UserError, first_line
from lionbench.optim.spec import Groups, Impl, OptimizerSpec

EXTRA = 'pip install "lionbench[optimizers]"'
OPT = "opt"  # the key naming the library's optimizer
IMPL = "library"  # the one implementation of a library entry: the library's own class
# Keys of a library config that are not keyword arguments of the optimizer (lr and
# weight_decay are, but come from optim.lr and optim.weight_decay).
NOT_KEYWORDS = ("name", "impl", "ratio", "_target_", OPT, "lr", "weight_decay")
# What a sweep or `bench optim` uses where no config gives them (as the registry's defaults).
BENCH_LR = 1e-4


@dataclass(frozen=True)
class Library:
    """One optimizer library: how to list its optimizers, find one's class (for its signature)
    and make one over parameter groups. `default` is what `bench optim` times (`bytes_moved` its
    traffic per fp32 parameter): the library's Lion where it has one, else its AdamW."""

    name: str  # the `optim=` choice and the distribution
    module: str  # what is imported
    listing: str  # where a user finds the names (python -c "import timm.optim; print(...)")
    default: str
    bytes_moved: int
    names: Callable[[Any], list[str]]  # module -> its optimizers' names
    cls: Callable[[Any, str], type]  # module, name -> the class
    make: Callable[[Any, str, Groups, dict[str, Any]], Any]  # module, name, groups, kwargs


def _timm_class(mod: Any, name: str) -> type:
    return mod.get_optimizer_class(mod.get_optimizer_info(name), bind_defaults=False)


def _heavyball_names(mod: Any) -> list[str]:
    import torch

    return [
        n
        for n in getattr(mod, "__all__", dir(mod))
        if isinstance(getattr(mod, n, None), type)
        and issubclass(getattr(mod, n), torch.optim.Optimizer)
    ]


LIBRARIES = {
    lib.name: lib
    for lib in (
        Library(
            name="timm",
            module="timm.optim",
            listing="timm.optim.list_optimizers()",
            default="lion",
            bytes_moved=20,
            names=lambda mod: list(mod.list_optimizers()),
            cls=_timm_class,
            # timm's factory: its per-optimizer defaults (momentum 0.9, nesterov) apply
            make=lambda mod, name, groups, kw: mod.create_optimizer_v2(groups, opt=name, **kw),
        ),
        Library(
            name="pytorch_optimizer",
            module="pytorch_optimizer",
            listing="pytorch_optimizer.get_supported_optimizers()",
            default="lion",
            bytes_moved=20,
            names=lambda mod: list(mod.get_supported_optimizers()),
            cls=lambda mod, name: mod.load_optimizer(name),
            make=lambda mod, name, groups, kw: mod.load_optimizer(name)(groups, **kw),
        ),
        Library(
            name="heavyball",
            module="heavyball",
            listing="the optimizer classes of heavyball.__all__",
            default="AdamW",
            bytes_moved=28,
            names=_heavyball_names,
            cls=lambda mod, name: getattr(mod, name),
            make=lambda mod, name, groups, kw: getattr(mod, name)(groups, **kw),
        ),
    )
}


def accepts_new_keys(optim_cfg: Mapping[str, Any]) -> bool:
    """Whether `+optim.KEY=...` means something: the keyword arguments of a library's optimizer
    (checked against its signature) or of a user `_target_` class."""
    return optim_cfg.get("_target_") is not None or optim_cfg.get("name") in LIBRARIES


def missing(needs: tuple[str, ...]) -> list[str]:
    """The libraries among an implementation's needs that are not installed."""
    return [
        f"{n} ({EXTRA})"
        for n in needs
        if n in LIBRARIES and importlib.util.find_spec(LIBRARIES[n].module.split(".")[0]) is None
    ]


def registry_specs() -> list[OptimizerSpec]:
    """The libraries' entries of the registry's table: what `lionbench list` and `bench optim`
    show (bench times each library's `default`). A config's own entry is `library_spec`."""
    return [
        OptimizerSpec(
            name=lib.name,
            title=lib.name,
            description=(  # no [brackets]: `lionbench list` prints rich markup
                f"{lib.name}'s optimizers by name: optim.opt=NAME (names: {lib.listing}), "
                "keyword arguments +optim.KEY=VALUE; lr and wd: the recipe's AdamW baseline, "
                "untuned; the optimizers extra"
            ),
            hyperparams=_hyperparams(lambda value, name: None),
            impls={IMPL: Impl(_build_by_config, lambda shape: 0, lib.bytes_moved, (lib.name,))},
            defaults={"lr": BENCH_LR, OPT: lib.default},
            also_reads=("adamw",),
        )
        for lib in LIBRARIES.values()
    ]


def _hyperparams(check_opt: Callable[[Any, str], None]) -> dict[str, Callable[[Any, str], None]]:
    return {"lr": checks.positive, "weight_decay": checks.non_negative, OPT: check_opt}


def _build_by_config(groups: Groups, hp: Mapping[str, Any]) -> Any:
    return library_spec(hp).impls[IMPL].build(groups, hp)


def library_spec(optim_cfg: Mapping[str, Any]) -> OptimizerSpec:
    """The entry of one library optimizer config: its name resolved to the library's class and
    every `+optim.KEY` checked against that class's signature (one line otherwise)."""
    lib = LIBRARIES[str(optim_cfg.get("name"))]
    opt = str(optim_cfg.get(OPT) or lib.default)
    mod = _import(lib)
    real, cls = _resolve(lib.name, opt)
    keywords = signature_keywords(cls)
    target = f"{cls.__module__}.{cls.__qualname__}"
    what = f"{lib.name}'s {real} ({target})"
    if "lr" not in keywords:
        raise UserError(f"optim.opt={opt}: {what} takes no lr, which lionbench's schedule sets")
    for key in (str(k) for k in optim_cfg if k not in NOT_KEYWORDS and k not in keywords):
        hint = checks.did_you_mean(key, keywords, prefix="optim.")
        raise UserError(f"optim.{key} is not a keyword of {what}{hint} (its keywords: "
                        f"{', '.join(keywords)})")  # fmt: skip

    def build(groups: Groups, hp: Mapping[str, Any]) -> Any:
        kwargs = {k: _plain(v) for k, v in hp.items() if k not in NOT_KEYWORDS}
        kwargs["lr"] = hp["lr"]
        if "weight_decay" in keywords:  # the groups carry it too (0 on biases and norms)
            kwargs["weight_decay"] = hp.get("weight_decay", 0.0)
        return lib.make(mod, real, groups, kwargs)

    def check_opt(value: Any, name: str) -> None:
        if "weight_decay" not in keywords and optim_cfg.get("weight_decay"):
            raise UserError(f"optim.weight_decay: {what} takes no weight decay (set "
                            f"optim.weight_decay=0)")  # fmt: skip
        try_build(build, {"lr": BENCH_LR, "weight_decay": 0.0, **optim_cfg}, what)

    return OptimizerSpec(
        name=lib.name,
        title=cls.__name__,
        description=what,
        hyperparams=_hyperparams(check_opt),
        impls={IMPL: Impl(build, lambda shape: 0, None, (lib.name,))},
        target=target,
        defaults={"lr": BENCH_LR, OPT: opt},
        also_reads=("adamw",),
    )


def _import(lib: Library) -> Any:
    """The library's module, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(lib.module)
    except ImportError as e:
        if importlib.util.find_spec(lib.module.split(".")[0]) is None:
            raise UserError(f"optim={lib.name} needs {lib.name} ({EXTRA})") from None
        raise UserError(
            f"optim={lib.name}: {lib.module} does not import ({first_line(e)})"
        ) from None


@functools.cache
def _resolve(library: str, opt: str) -> tuple[str, type]:
    """(the library's spelling of the name, its class); names match in any case."""
    lib = LIBRARIES[library]
    mod = _import(lib)
    names = lib.names(mod)
    by_lower = {n.lower(): n for n in names}
    real = opt if opt in names else by_lower.get(opt.lower())
    if real is None:
        close = difflib.get_close_matches(opt.lower(), list(by_lower), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
        raise UserError(f"unknown optim.opt '{opt}' for optim={library}{hint} ({len(names)} "
                        f"names: {lib.listing})")  # fmt: skip
    try:
        return real, lib.cls(mod, real)
    except Exception as e:  # an optional dependency of that optimizer (bitsandbytes, apex, ...)
        raise UserError(
            f"optim.opt={real}: {library} cannot make it here ({first_line(e, with_type=True)})"
        ) from None


def signature_keywords(cls: type) -> list[str]:
    """The keyword arguments a class's constructor names, but its first (the parameters); a
    `**kwargs` takes nothing here (pytorch_optimizer's ignore what they do not know)."""
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds][1:]


def try_build(build: Callable[..., Any], hp: Mapping[str, Any], what: str) -> None:
    """Build the optimizer once over one 2x2 tensor (on the CPU): what the library refuses
    (a beta out of range, a value of the wrong type) is one line before the run starts."""
    import torch

    param = torch.nn.Parameter(torch.zeros(2, 2))
    try:
        build([{"params": [param], "weight_decay": hp["weight_decay"]}], hp)
    except Exception as e:
        raise UserError(f"{what} refused these settings: {first_line(e, with_type=True)}") from None


def _plain(value: Any) -> Any:
    """A list from the config (a ListConfig at validation) as the tuple constructors expect."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(_plain(v) for v in value)
    return value
