"""`lionbench bench optim`: the time of one `optimizer.step()`, per implementation.

Parameters are shaped like a real model's (every tensor of GPT-2 124M, ResNet-50 or ViT-B/16,
built on the meta device for their shapes) or one flat tensor. Each implementation gets fresh fp32
parameters on the device and two sets of random gradients used in turn (so caches do not
flatter), warms up, then times every step between device synchronizations; the median and the
spread are reported with the effective bandwidth under the bytes-moved model of each registry
implementation (docs/references.md: Lion reads p, g, m and writes p, m: 20 bytes per parameter,
16 with bf16 momentum; AdamW also reads and writes v: 28) and as a fraction of the streaming
bandwidth measured in the same run.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from lionbench import checks
from lionbench.errors import UserError
from lionbench.files import atomic_write_json, atomic_write_text
from lionbench.loop.device import resolve_device
from lionbench.optim import build_from_groups, check_impl
from lionbench.optim.registry import OPTIMIZERS, Impl, all_impls, missing_needs

PARAM_SETS = ("gpt2-124m", "resnet50", "vit-b16", "flat:N")
BASELINE = "adamw:fused"


def impl_spec(impl: str) -> Impl:
    """`optim:impl` -> the registry's implementation, or one line listing the accepted ones."""
    name, _, variant = impl.partition(":")
    if name not in OPTIMIZERS or variant not in OPTIMIZERS[name].impls:
        raise UserError(f"unknown --impls '{impl}' (accepted: {', '.join(all_impls())})")
    return OPTIMIZERS[name].impls[variant]


def default_impls(device_name: str) -> list[str]:
    """Every implementation that can run on this device (Triton's needs CUDA)."""
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    device_type = "cuda" if cuda else "cpu"
    return [i for i in all_impls() if not missing_needs(impl_spec(i), device_type)]


def param_shapes(name: str) -> list[tuple[int, ...]]:
    """The parameter shapes of a model (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        if name == "gpt2-124m":
            from lionbench.recipes.gpt2 import GPT

            model: torch.nn.Module = GPT(12, 12, 768, 1024, 50304)
        elif name == "resnet50":
            from torchvision.models import resnet50

            model = resnet50()
        elif name == "vit-b16":
            from torchvision.models import vit_b_16

            model = vit_b_16()
        elif name.startswith("flat:"):
            try:
                size = float(name.split(":", 1)[1])
            except ValueError:
                size = 0.0
            n = int(size) if math.isfinite(size) else 0
            if n < 1:
                raise UserError(
                    f"--params {name}: flat:N needs a finite size N >= 1 (e.g. flat:1e8)"
                )
            return [(n,)]
        else:
            raise UserError(f"unknown --params '{name}' (accepted: {', '.join(PARAM_SETS)})")
    return [tuple(p.shape) for p in model.parameters()]


def memory_bandwidth(device: torch.device, n_bytes: int, repeats: int = 10) -> float:
    """The device's measured streaming bandwidth (bytes moved per second): the best median of an
    in-place scale (a *= 1: one read, one write) and an in-place add (a += eps * b: two reads,
    one write), on arrays larger than the caches. It is what torch's own streaming kernels
    reach, the practical ceiling of an optimizer step; a loop that prefetches its streams can
    beat it somewhat on a CPU."""
    n = max(1, n_bytes // 4)
    a, b = torch.rand(n, device=device), torch.rand(n, device=device)
    best = 0.0
    # In place, as an optimizer step writes: no write-allocate reads inflate the traffic.
    for op, moved in ((lambda: a.mul_(1.0), 8), (lambda: a.add_(b, alpha=1e-3), 12)):
        times = []
        for _ in range(repeats + 2):
            sync(device)
            t0 = time.perf_counter()
            op()
            sync(device)
            times.append(time.perf_counter() - t0)
        best = max(best, moved * n / statistics.median(times[2:]))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_impl(
    impl: str,
    shapes: list[tuple[int, ...]],
    device: torch.device,
    steps: int,
    warmup: int,
    seed: int = 0,
) -> list[float]:
    """Seconds of each timed optimizer.step()."""
    optim, _, variant = impl.partition(":")
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, device=device, generator=gen)) for s in shapes]
    grads = [[torch.randn(s, device=device, generator=gen) for s in shapes] for _ in range(2)]
    groups = [{"params": params, "weight_decay": 0.1}]
    # the registry's defaults: the update's cost does not depend on the hyperparameters' values
    cfg = {"name": optim, "impl": variant, "weight_decay": 0.1}
    check_impl(cfg, device.type)
    opt = build_from_groups(cfg, groups)
    times = []
    for i in range(warmup + steps):
        for p, g in zip(params, grads[i % 2], strict=True):
            p.grad = g
        sync(device)
        t0 = time.perf_counter()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    del opt, params, grads
    return times


def bench_optim(
    params: str, impls: list[str], steps: int, warmup: int, repeats: int, device_name: str
) -> list[dict[str, Any]]:
    for impl in impls:
        impl_spec(impl)
    if steps < 1 or warmup < 0 or repeats < 1:
        raise UserError("--steps and --repeats must be >= 1, --warmup >= 0")
    device = resolve_device(device_name)
    shapes = param_shapes(params)
    n = sum(math.prod(s) for s in shapes)
    # Repeats take the implementations (and the bandwidth probe) in turn, so a slow spell of a
    # shared machine lands on all of them rather than on whichever was being timed.
    medians: dict[str, list[float]] = {impl: [] for impl in impls}
    bandwidths = []
    for r in range(repeats):
        bandwidths.append(memory_bandwidth(device, 1 << 30))  # 1 GiB arrays: beyond any cache
        for impl in impls:
            medians[impl].append(
                statistics.median(time_impl(impl, shapes, device, steps, warmup, seed=r))
            )
    bandwidth = statistics.median(bandwidths)
    rows = []
    for impl in impls:
        ms = statistics.median(medians[impl]) * 1e3
        moved = impl_spec(impl).bytes_moved
        gbps = moved * n / (ms / 1e3) / 1e9 if moved else math.nan
        rows.append(
            {
                "params": params,
                "n_params": n,
                "n_tensors": len(shapes),
                "impl": impl,
                "ms_per_step": ms,
                "ms_min": min(medians[impl]) * 1e3,
                "ms_max": max(medians[impl]) * 1e3,
                "repeats": repeats,
                "steps": steps,
                "bytes_per_param": moved,
                "effective_gb_s": gbps,
                "bandwidth_gb_s": bandwidth / 1e9,
                "fraction_of_bandwidth": gbps / (bandwidth / 1e9),
                "device": str(device),
                "torch_version": torch.__version__,
            }
        )
    base = next((r["ms_per_step"] for r in rows if r["impl"] == BASELINE), None)
    for r in rows:
        r["vs_adamw_fused"] = r["ms_per_step"] / base if base else None
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from lionbench.console import make_console, short

    first = rows[0]
    table = Table(
        title=f"optimizer.step() on {first['params']} ({first['n_params']:,} params in "
        f"{first['n_tensors']} tensors), {first['device']}; measured bandwidth "
        f"{first['bandwidth_gb_s']:.1f} GB/s",
        title_justify="left",
        caption="ms/step: median over repeats of each repeat's median step; range: min-max of "
        "those medians; GB/s: the bytes-moved model over the time; of bw: that over the "
        "measured bandwidth; vs fused: time over torch AdamW fused's",
        caption_justify="left",
    )
    table.add_column("impl", no_wrap=True)
    for col in ("ms/step", "range", "GB/s", "of bw", "vs fused"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in sorted(rows, key=lambda r: r["ms_per_step"]):
        table.add_row(
            r["impl"],
            short(r["ms_per_step"]),
            f"{short(r['ms_min'])}-{short(r['ms_max'])}",
            f"{r['effective_gb_s']:.1f}",
            f"{r['fraction_of_bandwidth']:.0%}",
            "-" if r["vs_adamw_fused"] is None else f"{r['vs_adamw_fused']:.2f}",
        )
    make_console().print(table)


def check_options(
    params: str,
    impls: list[str],
    steps: int,
    warmup: int,
    repeats: int,
    device_name: str,
    out: Path | None,
) -> None:
    """Every option of `bench optim`, checked before the bandwidth probe and the first timed
    step, so that a typo costs no benchmark time."""
    check_out(out)
    if params.startswith("flat:"):
        param_shapes(params)  # parses N; allocates nothing
    elif params not in PARAM_SETS:
        raise UserError(f"unknown --params '{params}' (accepted: {', '.join(PARAM_SETS)})")
    for impl in impls:
        impl_spec(impl)
    checks.bench_counts(steps, warmup, repeats)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device_name):
        raise UserError(f"unknown --device '{device_name}' (accepted: auto, cpu, cuda, cuda:N)")
    device = resolve_device(device_name)
    check_fits(params, device)
    for impl in impls:
        missing = missing_needs(impl_spec(impl), device.type)
        if missing:
            raise UserError(
                f"--impls {impl} needs {' and '.join(missing)} (accepted here: "
                f"{', '.join(default_impls(device.type))})"
            )


# float32 tensors per parameter a timed step holds: the parameter, two gradient sets (the
# steps alternate between them) and up to two state tensors (AdamW's moments).
TENSORS_PER_PARAM = 5


def device_memory(device: torch.device) -> int:
    """The device's total memory in bytes (RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(params: str, device: torch.device) -> None:
    """A parameter set the device cannot hold is one line now, not an allocator error later."""
    n = sum(math.prod(s) for s in param_shapes(params))
    need, have = n * 4 * TENSORS_PER_PARAM, device_memory(device)
    if need > have:
        raise UserError(
            f"--params {params} needs about {need / 1e9:,.0f} GB ({n:,} parameters x "
            f"{TENSORS_PER_PARAM} float32 tensors), more than the {device.type} memory of "
            f"{have / 1e9:,.0f} GB (accepted: a smaller flat:N)"
        )


def check_out(out: Path | None) -> None:
    if out is not None and (out.suffix not in (".csv", ".json") or not out.parent.is_dir()):
        raise UserError(f"--out {out}: give a .csv or .json file in an existing directory")
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory (give a .csv or .json file)")


def write(rows: list[dict[str, Any]], out: Path) -> None:
    """The table's rows as a .json list or a .csv table (`bench optim` and `bench train`)."""
    if out.suffix == ".json":
        atomic_write_json(out, rows)
    else:
        import pandas as pd

        atomic_write_text(out, pd.DataFrame(rows).to_csv(index=False))
