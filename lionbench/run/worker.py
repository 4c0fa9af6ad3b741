"""A torchrun worker of a `dist.nproc > 1` run: `python -m lionbench.run.worker <config.yaml>`.

It trains the run whose resolved config the orchestrator wrote into the run directory
(run/torchrun.py explains the two ways into DDP).
"""

from __future__ import annotations

import contextlib
import sys

from omegaconf import OmegaConf

from lionbench.errors import Interrupted
from lionbench.run import runner


def main(argv: list[str]) -> int:
    cfg = OmegaConf.load(argv[0])
    with contextlib.suppress(Interrupted):  # recorded in summary.json; the orchestrator says it
        runner.run(cfg)  # type: ignore[arg-type]
    # The outcome (completed, diverged, failed) is in summary.json: a non-zero exit here would
    # only make torchrun print an error report over it.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
