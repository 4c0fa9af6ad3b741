"""Config composition and validation, before any work starts.

`lionbench run` composes every config it is about to launch (each point of a multirun too) with
Hydra's compose API and checks it here, so that bad input becomes one line and exit code 2 before
a single run directory exists: args.py (the command line: flags, overrides, the jobs of a
multirun), compose.py (Hydra's compose API, resolvers, composition errors), validate.py (the
schema's shape and every value). Nothing in this package imports torch.
"""

from lionbench.config.args import (
    config_dirs,
    expand_overrides,
    is_multirun,
    is_passthrough,
    override_key,
    seeds_first,
    split_args,
    sweeper,
)
from lionbench.config.compose import (
    CONF_DIR,
    CONFIG_NAME,
    choices,
    compose,
    compose_quiet,
    decimal_div,
    decimal_mul,
    register_resolvers,
)
from lionbench.config.validate import (
    PRECISIONS,
    SCHEDULES,
    WANDB_MODES,
    check_positive_ints,
    check_structure,
    validate,
    validate_optim,
)

__all__ = [
    "CONFIG_NAME",
    "CONF_DIR",
    "PRECISIONS",
    "SCHEDULES",
    "WANDB_MODES",
    "check_positive_ints",
    "check_structure",
    "choices",
    "compose",
    "compose_quiet",
    "config_dirs",
    "decimal_div",
    "decimal_mul",
    "expand_overrides",
    "is_multirun",
    "is_passthrough",
    "override_key",
    "register_resolvers",
    "seeds_first",
    "split_args",
    "sweeper",
    "validate",
    "validate_optim",
]
