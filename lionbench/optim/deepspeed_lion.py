"""DeepSpeed's Lion as implementations of `optim=lion`: `deepspeed_cpu` (DeepSpeedCPULion, its
C++ op with AVX, for CPU tensors) and `deepspeed_fused` (FusedLion, its CUDA multi-tensor op).

Both ops are built by DeepSpeed's op builder on first use (the system's C++ compiler and ninja;
nvcc for the fused one), cached under ~/.cache/torch_extensions: an op that cannot build here is
a missing need (`missing`), so `bench optim` leaves the implementation out and a run refuses it in
one line. Both compute in fp32 and differ from the published rule where the interpolated
momentum c is exactly 0: the CPU op steps by -lr * copysign(1, c) (a parameter whose gradient
and momentum are 0 moves down by lr), the CUDA op by -lr for c > 0 else +lr; the published rule
(torch.sign) leaves it. DeepSpeedCPULion also allocates an `exp_avg_sq` it never reads: here its
state is made first, without it (4 bytes per parameter, as every other Lion). Nothing here imports
torch or DeepSpeed at module level.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from lionbench.errors import first_line, warn
from lionbench.optim.spec import Groups

EXTRA = 'pip install "lionbench[optimizers]"'
# A need of an implementation (`Impl.needs`) -> the DeepSpeed op it loads and the builder's name.
CPU, FUSED = "deepspeed:cpu_lion", "deepspeed:fused_lion"
BUILDERS = {CPU: "CPULionBuilder", FUSED: "FusedLionBuilder"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """DeepSpeed logs to stdout (its handler holds the stdout of import time) and its op builder
    prints there: `bench optim` keeps stdout for its table. Warnings below errors are dropped,
    prints go nowhere, while DeepSpeed is imported and its ops loaded."""
    loggers = [logging.getLogger(n) for n in ("DeepSpeed", "torch.utils.cpp_extension")]

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    for lg in loggers:
        lg.addFilter(keep)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(keep)


def missing(needs: tuple[str, ...], device_type: str) -> list[str]:
    """What DeepSpeed's implementations need that this machine lacks: DeepSpeed itself, CPU
    tensors for the CPU op, the op built. Left to the registry: a CUDA device for the fused op
    (nothing is built without one)."""
    out = []
    for need in (n for n in needs if n in BUILDERS):
        if need == CPU and device_type != "cpu":
            out.append("parameters on the CPU (device=cpu: DeepSpeed's CPU Lion steps CPU tensors)")
        elif need == FUSED and device_type != "cuda":
            continue
        elif importlib.util.find_spec("deepspeed") is None:
            out.append(f"DeepSpeed ({EXTRA})")
        elif (problem := op_problem(need)) is not None:
            out.append(problem)
    return out


@functools.cache
def op_problem(need: str) -> str | None:
    """Why DeepSpeed's op cannot be loaded here (built first, once), or None: once a process."""
    op = need.partition(":")[2]
    try:
        load(need)
    except Exception as e:  # a compiler error, a missing ninja or nvcc, an ABI mismatch
        problem = (
            f"DeepSpeed's {op} op, which did not build here ({first_line(e, with_type=True)}; "
            "it needs a C++ compiler and ninja, and nvcc for the CUDA op)"
        )
        warn(f"DeepSpeed's Lion ({op}) left out: {problem}")
        return problem
    return None


def load(need: str) -> Any:
    """DeepSpeed's op module for a need, built by its op builder on first use (said on stderr:
    it takes about a minute)."""
    with quiet():
        from deepspeed.ops import op_builder

        builder = getattr(op_builder, BUILDERS[need])()
        if not _built(builder.name):
            print(f"building DeepSpeed's {builder.name} op (first use: about a minute)",
                  file=sys.stderr, flush=True)  # fmt: skip
        return builder.load(verbose=False)


def _built(name: str) -> bool:
    """Whether torch's extension cache already holds the op (torch's private layout: a guess
    that only decides whether to say a build is coming)."""
    with contextlib.suppress(Exception):
        from pathlib import Path

        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    return False


def build_cpu(groups: Groups, hp: Mapping[str, Any]) -> Any:
    """DeepSpeedCPULion over the groups (their weight decay; lr and betas per group)."""
    with quiet():
        from deepspeed.ops.lion import DeepSpeedCPULion

    return _lean(DeepSpeedCPULion)(groups, lr=hp["lr"], betas=tuple(hp["betas"]))


def build_fused(groups: Groups, hp: Mapping[str, Any]) -> Any:
    """FusedLion (CUDA) over the groups."""
    with quiet():
        from deepspeed.ops.lion import FusedLion

        return FusedLion(groups, lr=hp["lr"], betas=tuple(hp["betas"]))


@functools.cache
def _lean(cls: type) -> type:
    """DeepSpeedCPULion whose state is made before its step, without the unused `exp_avg_sq`
    (its step fills a parameter's state only when empty): {step, exp_avg}, 4 bytes per fp32
    parameter, and no second buffer allocated even for the first step."""
    import torch

    class CPULion(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with quiet():
                super().__init__(*args, **kwargs)

        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            dtype = torch.float32 if self.fp32_optimizer_states else None
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and not self.state[p]:
                        self.state[p]["step"] = 0
                        self.state[p]["exp_avg"] = torch.zeros_like(p, dtype=dtype or p.dtype)
            super().step()
            return loss

    CPULion.__name__ = CPULion.__qualname__ = cls.__name__
    CPULion.__module__ = cls.__module__
    return CPULion
