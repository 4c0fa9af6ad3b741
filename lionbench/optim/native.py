"""The CPU Lion kernel (lion_cpu.c): built once per machine with the system C compiler, loaded
through ctypes.

It is built for this CPU (-march=native) with OpenMP, so the cache key holds the source, the
compiler, the flags and the CPU's model and feature flags: a home directory shared by different
nodes never loads a kernel built for another instruction set. The build goes to a temporary file
and is renamed into place, so concurrent runs (a sweep, DDP ranks) never load half a library.
Where no compiler works, `library()` returns None and says why once; Lion then falls back to its
torch.compile path.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from lionbench.errors import warn
from lionbench.files import lionbench_cache

SOURCE = Path(__file__).with_name("lion_cpu.c")
# Tried in order: the last ones give up OpenMP (one thread) or native instructions.
FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-march=native"],
    ["-O3"],
)
COMMON_FLAGS = ["-std=c11", "-ffp-contract=off", "-fPIC", "-shared"]


def _compiler() -> str | None:
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((c for c in map(shutil.which, ("cc", "gcc", "clang")) if c), None)


def _cpu_fingerprint() -> str:
    """The CPU's model and feature flags (Linux), else the platform's description."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keys = ("model name", "flags", "Features", "CPU part")
        return "\n".join(sorted({ln for ln in lines if ln.split(":")[0].strip() in keys}))
    except OSError:
        return platform.platform() + platform.processor()


def _build(compiler: str, flags: list[str], target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        cmd = [compiler, *flags, *COMMON_FLAGS, str(SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return False
        os.replace(tmp, target)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def _warn(why: str) -> None:
    warn(f"lionbench's CPU Lion kernel unavailable ({why}); using the torch.compile path")


@cache
def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on first use; None (with one warning) where it cannot be."""
    compiler = _compiler()
    if compiler is None:
        _warn("no C compiler: set CC or install gcc")
        return None
    identity = [SOURCE.read_bytes(), compiler.encode(), _cpu_fingerprint().encode()]
    for flags in FLAG_SETS:
        parts = [*identity, " ".join(flags + COMMON_FLAGS).encode()]
        key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
        target = lionbench_cache("kernels") / f"lion_cpu-{key}.so"
        if target.exists() or _build(compiler, flags, target):
            try:
                lib = ctypes.CDLL(str(target))
            except OSError as e:
                _warn(f"{target} does not load: {e}")
                return None
            lib.lionbench_lion_step.restype = None
            lib.lionbench_lion_step.argtypes = [
                ctypes.c_int64,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_int,
                *[ctypes.c_float] * 6,
                ctypes.c_int,
            ]
            return lib
    _warn(f"{compiler} could not build {SOURCE.name}")
    return None


def supports(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> bool:
    """Contiguous fp32 CPU parameters and gradients with an fp32 or bf16 momentum."""
    return (
        p.device.type == "cpu"
        and p.dtype == g.dtype == torch.float32
        and m.dtype in (torch.float32, torch.bfloat16)
        and p.is_contiguous()
        and g.is_contiguous()
        and m.is_contiguous()
        and g.shape == p.shape == m.shape
    )


def lion_step(
    lib: ctypes.CDLL,
    ps: Sequence[torch.Tensor],
    gs: Sequence[torch.Tensor],
    ms: Sequence[torch.Tensor],
    lr: float,
    wd: float,
    betas: tuple[float, float],
) -> None:
    """One Lion step over tensors that pass `supports`, all with the same momentum dtype. The
    GIL is released during the call (ctypes), and the kernel uses torch's thread count.
    Parameters that overlap in memory (one listed twice, two sharing a tensor) are updated one
    after the other, as the eager loop does: in one call, threads would race on them."""
    n = len(ps)
    if n == 0:
        return
    starts = [p.data_ptr() for p in ps]
    spans = sorted((s, s + 4 * p.numel()) for s, p in zip(starts, ps, strict=True))
    if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
        for i in range(n):
            lion_step(lib, ps[i : i + 1], gs[i : i + 1], ms[i : i + 1], lr, wd, betas)
        return
    pointers = ctypes.c_void_p * n
    b1, b2 = betas
    lib.lionbench_lion_step(
        n,
        pointers(*starts),
        pointers(*[g.data_ptr() for g in gs]),
        pointers(*[m.data_ptr() for m in ms]),
        (ctypes.c_int64 * n)(*[p.numel() for p in ps]),
        int(ms[0].dtype == torch.bfloat16),
        lr,
        wd,
        b1,
        1.0 - b1,
        b2,
        1.0 - b2,
        torch.get_num_threads(),
    )
