"""The command line of `lionbench run`: Hydra's flags apart from config overrides, and the
jobs a multirun describes (expanded through Hydra's own override parser). Nothing here imports
torch or composes a config.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.errors import UserError, first_line

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
# Every flag Hydra's main takes (hydra 1.3); anything else that starts with "-" is a typo,
# refused at once rather than after the pre-check, in Hydra's usage text.
KNOWN_FLAGS = PASSTHROUGH_FLAGS | FLAGS_WITH_VALUE | {
    "--version", "--resolve", "--run", "-r", "--multirun", "-m",
}  # fmt: skip
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
            check_yaml_files(path, f"{flag} {value}")
            dirs.append(path)
    return dirs


def check_yaml_files(root: Path, where: str) -> None:
    """Every YAML file of a config directory parses as plain YAML: a syntax error, or a tag such
    as !!python/object that only an unsafe loader would run, is one line naming the file and
    line (Hydra would raise it later, deep in composition, as a long traceback)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(root.rglob("*.yaml")):
        try:
            yaml.load(path.read_text(), Loader=loader)
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{where}: cannot read {path.relative_to(root)}: {e}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or first_line(e)
            tag = " (configs are plain YAML: no !!python tags)" if "!!python" in str(e) or (
                "python/" in str(e)
            ) else ""  # fmt: skip
            raise UserError(f"{where}: {path.relative_to(root)}{line}: {problem}{tag}") from None


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra's flags (with their values) from config overrides; a flag that needs a
    value and has none is one line here, not Hydra's argparse usage text."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(args)
    for arg in it:
        if arg.startswith("-"):
            check_flag(arg)
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


def check_flag(arg: str) -> None:
    """A flag Hydra's main knows (`--cfg=job` spells `--cfg job`), anywhere on the line."""
    name = arg.split("=", 1)[0]
    if name in KNOWN_FLAGS:
        return
    long = sorted(f for f in KNOWN_FLAGS if f.startswith("--"))
    raise UserError(
        f"unknown option '{arg}'{checks.did_you_mean(name, long)} (lionbench run takes Hydra's "
        f"flags: -m/--multirun, --cfg job|hydra|all, --resolve, --package, --info, --config-dir "
        f"DIR, --config-name, --config-path, --hydra-help, --help; everything else is an "
        f"override key=value)"
    )


def override_key(override: str) -> str:
    """The dotted key an override sets: `+train.steps=5` -> `train.steps`."""
    return override.lstrip("+~").split("=", 1)[0]


def seeds_first(args: Sequence[str]) -> list[str]:
    """The arguments with the `seed=` override before every other override: Hydra's basic
    sweeper runs the cartesian product with the first override varying slowest, so a multirun
    `optim=lion,adamw seed=0,1,2` runs seed by seed, every optimizer within each seed, never
    one optimizer's block after the other's (machine drift over the multirun would line up with
    the optimizer and pass for its speed). The set of runs is the same; Hydra's flags go first."""
    flags, overrides = split_args(args)
    seeds = [o for o in overrides if override_key(o) == "seed"]
    return [*flags, *seeds, *(o for o in overrides if o not in seeds)]


def sweeper(overrides: Sequence[str]) -> str:
    """The Hydra sweeper a multirun uses: `hydra/sweeper=NAME`, else Hydra's basic one."""
    names = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra/sweeper=")]
    return names[-1] if names else "basic"


def expand_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the jobs to check before a multirun: every job Hydra's basic
    sweeper would launch (the cartesian product of the sweep values; one list without
    --multirun), through Hydra's public override parser. A sweeper that samples (Optuna...)
    launches points of its own choosing: its discrete choices and both ends of each
    `interval()` are checked (`tag()` and the rest of its grammar pass through to it)."""
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
    sampling = sweeper(overrides) != "basic"
    axes = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if o.is_discrete_sweep():
                axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
            elif sampling:  # interval(): the sweeper samples inside it; check both ends
                axes.append([f"{key}={end!r}" for end in (o.value().start, o.value().end)])
            else:
                raise UserError(
                    f"'{o.input_line}': interval() needs a sweeper that samples, e.g. "
                    f"hydra/sweeper=optuna (pip install hydra-optuna-sweeper); the basic sweeper "
                    f"takes lists, choice() and range()"
                )
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
