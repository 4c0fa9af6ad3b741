"""`dist.nproc > 1`: the Hydra job orchestrates, PyTorch's own `torchrun` starts the workers.

Two ways into data-parallel training, one code path (loop/ddp.py):

- `lionbench run ... dist.nproc=N`: the Hydra job writes the resolved config into the run
  directory and starts `torchrun --standalone --nproc_per_node N -m lionbench.run.worker <run
  dir>/config.yaml` (`launch`); the workers read that config, so every rank trains the same run
  in the same directory, under the orchestrator's lock.
- `torchrun ... -m lionbench run ...` (multi-node: torchrun's own --nnodes/--rdzv-* flags): every
  rank runs the Hydra app itself; `dist.nproc` is taken from torchrun's WORLD_SIZE.
"""

from __future__ import annotations

import os
import subprocess
import sys

from lionbench.run.lock import HELD_ENV
from lionbench.run.rundir import RunDir
from lionbench.signals import forwarded_once


def launch(rundir: RunDir, nproc: int) -> int:
    """Run the workers under torchrun on the run directory's config.yaml and wait. torchrun runs
    in a session of its own, so a terminal's Ctrl-C reaches the workers once (passed on here,
    then forwarded by torchrun to every worker), not twice."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lionbench.run.worker",
        str(rundir.config),
    ]
    env = {**os.environ, HELD_ENV: str(rundir.path)}  # the workers train under our lock
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    with forwarded_once(proc):
        return proc.wait()
