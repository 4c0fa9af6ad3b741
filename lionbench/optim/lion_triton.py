"""lionbench's Lion as one Triton kernel per parameter group and dtype: `impl=lionbench_triton`.

The rule and its fp32 operation order are lion.py's eager `_update` (docs/design.md, section 4,
"The optimizer registry", which also states the tolerances; the rule in docs/references.md):

    c = m * b1 + g * (1 - b1)
    p = p * (1 - lr * wd) - lr * sign(c)
    m = m * b2 + g * (1 - b2)

One launch updates every tensor of a group that shares a (parameter dtype, momentum dtype)
pair, in one pass over memory (read p, g, m; write p, m: 20 bytes per fp32 parameter, 16 with a
bf16 momentum). The launch reads a table of raw addresses (`_Table`): per tensor, the addresses
of p, g and m, its size and the index of its first block; each program finds its tensor by a
binary search over those block offsets. The table lives on the device and is rebuilt only when
an address or a size changes (a replaced tensor, a freshly allocated gradient).

lr and wd come from 0-d tensors refilled in place each step (lion.py's `_lr_wd`), the betas
from a small tensor rebuilt only when they change, so schedules neither recompile nor
synchronize the host. Arithmetic is in fp32 (fp64 for fp64 parameters), launched with
`enable_fp_fusion=False` so the compiler does not contract multiply-adds: the same bits as the
eager rule in fp32 and fp64. bf16 is widened and rounded (to nearest even) by integer bit
operations, as lion_cpu.c does, so the result does not depend on the backend's conversions
(Triton's CPU interpreter truncates on some paths). With bf16 parameters the math stays fp32
where the eager rule computes in bf16: close, not equal.

Tensors the kernel cannot take (non-contiguous, other dtypes, a gradient of another dtype, CPU
tensors unless Triton's interpreter is on: TRITON_INTERPRET=1 when this module is imported, since
Triton decides at a kernel's definition whether it is interpreted) go through
the eager `_update`. Parameters that overlap in memory are launched one at a time, in order, as
the eager loop updates them (one launch would race on them).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from lionbench.optim.lion import Lion, _update

BLOCK = 1024  # elements per program
# storage kind of a dtype in the kernel: 0 fp32, 1 bf16 (handled as uint16 bits), 2 fp64
_KIND = {torch.float32: 0, torch.bfloat16: 1, torch.float64: 2}
# (parameter, momentum) dtypes the kernel takes; fp64 momentum only with fp64 parameters
_PAIRS = {
    (torch.float32, torch.float32),
    (torch.float32, torch.bfloat16),
    (torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32),
    (torch.float64, torch.float64),
}


@triton.jit
def _widen(addr, offs, mask, KIND: tl.constexpr):
    """Load a block as fp32 (fp64 for fp64); bf16 bits widened by a shift, exact."""
    if KIND == 1:
        bits = tl.load(addr.to(tl.pointer_type(tl.uint16)) + offs, mask=mask, other=0)
        return (bits.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    elif KIND == 2:
        return tl.load(addr.to(tl.pointer_type(tl.float64)) + offs, mask=mask, other=0.0)
    else:
        return tl.load(addr.to(tl.pointer_type(tl.float32)) + offs, mask=mask, other=0.0)


@triton.jit
def _narrow(addr, offs, x, mask, KIND: tl.constexpr):
    """Store a block; to bf16 rounded to nearest even, NaN kept a quiet NaN (lion_cpu.c's
    f32_to_bf16, and torch's rounding)."""
    if KIND == 1:
        u = x.to(tl.uint32, bitcast=True)
        r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        r = tl.where((u & 0x7FFFFFFF) > 0x7F800000, 0x7FC0, r)
        tl.store(addr.to(tl.pointer_type(tl.uint16)) + offs, r.to(tl.uint16), mask=mask)
    elif KIND == 2:
        tl.store(addr.to(tl.pointer_type(tl.float64)) + offs, x, mask=mask)
    else:
        tl.store(addr.to(tl.pointer_type(tl.float32)) + offs, x, mask=mask)


@triton.jit
def _lion_kernel(
    table, n_tensors, n_iter, lr_ptr, wd_ptr, betas_ptr,
    P_KIND: tl.constexpr, M_KIND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One block of one tensor: the program finds its tensor by a binary search over the
    tensors' first blocks, then reads p, g, m once and writes p, m once."""
    pid = tl.program_id(0)
    first_block = table + 4 * n_tensors  # n_tensors + 1 cumulative block counts
    lo = pid * 0
    hi = lo + n_tensors
    for _ in range(n_iter):  # invariant: first_block[lo] <= pid < first_block[hi]
        mid = (lo + hi) // 2
        right = tl.load(first_block + mid) <= pid
        lo = tl.where(right, mid, lo)
        hi = tl.where(right, hi, mid)
    offs = (pid - tl.load(first_block + lo)) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < tl.load(table + 3 * n_tensors + lo)
    p_addr = tl.load(table + lo)
    m_addr = tl.load(table + 2 * n_tensors + lo)
    p = _widen(p_addr, offs, mask, P_KIND)
    g = _widen(tl.load(table + n_tensors + lo), offs, mask, P_KIND)
    m = _widen(m_addr, offs, mask, M_KIND).to(p.dtype)
    lr = tl.load(lr_ptr)
    b1, nb1 = tl.load(betas_ptr), tl.load(betas_ptr + 1)
    b2, nb2 = tl.load(betas_ptr + 2), tl.load(betas_ptr + 3)
    c = m * b1 + g * nb1  # the eager rule's order; no contraction (enable_fp_fusion=False)
    sign = (c > 0).to(p.dtype) - (c < 0).to(p.dtype)
    _narrow(p_addr, offs, p * (1.0 - lr * tl.load(wd_ptr)) - lr * sign, mask, P_KIND)
    _narrow(m_addr, offs, m * b2 + g * nb2, mask, M_KIND)


_INTERPRETED = isinstance(_lion_kernel, InterpretedFunction)


def interpreted() -> bool:
    """Whether the kernel runs in Triton's CPU interpreter (then it takes CPU tensors only)."""
    return _INTERPRETED


def supports(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> bool:
    """Contiguous tensors on CUDA (on the CPU under the interpreter): fp32 or bf16 parameters
    with an fp32 or bf16 momentum, or fp64 with fp64; the gradient of the parameter's dtype."""
    device = "cpu" if _INTERPRETED else "cuda"
    return (
        p.device.type == device
        and p.dtype == g.dtype
        and (p.dtype, m.dtype) in _PAIRS
        and g.shape == p.shape == m.shape
        and all(t.is_contiguous() for t in (p, g, m))
    )


def overlapping(ps: Sequence[torch.Tensor]) -> bool:
    """Whether two of these tensors share memory (one parameter listed twice, tied views)."""
    spans = sorted((p.data_ptr(), p.data_ptr() + p.numel() * p.element_size()) for p in ps)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


@dataclass
class _Table:
    """The device table of one launch: rows p, g, m addresses, sizes, then first blocks."""

    table: torch.Tensor
    n_tensors: int
    n_blocks: int
    n_iter: int  # binary-search steps: ceil(log2(n_tensors))


def build_table(
    ps: Sequence[torch.Tensor], gs: Sequence[torch.Tensor], ms: Sequence[torch.Tensor]
) -> _Table:
    """The address table for one launch, copied to the parameters' device without blocking the
    host (pinned memory on CUDA)."""
    sizes = [p.numel() for p in ps]
    first = [0, *itertools.accumulate(-(-n // BLOCK) for n in sizes)]
    rows = [t.data_ptr() for t in (*ps, *gs, *ms)] + sizes + first
    table = torch.tensor(rows, dtype=torch.int64)
    device = ps[0].device
    if device.type == "cuda":
        table = table.pin_memory().to(device, non_blocking=True)
    n = len(ps)
    return _Table(table, n, first[-1], max(n - 1, 0).bit_length())


class TritonLion(Lion):
    """Lion through the Triton kernel (`impl=lionbench_triton`); the state is lion.py's (and
    lion-pytorch's): `exp_avg`, bf16 with `momentum_dtype=torch.bfloat16`."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        momentum_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            params, lr, betas, weight_decay, momentum_dtype, compiled=False, native=False
        )
        # (group, device, dtypes) -> (addresses and sizes, the launches' tables)
        self._tables: dict[tuple[Any, ...], tuple[tuple[int, ...], list[_Table]]] = {}
        self._betas: dict[tuple[Any, ...], torch.Tensor] = {}

    def _momentum(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(
                p, dtype=self.momentum_dtype or p.dtype, memory_format=torch.preserve_format
            )
        return state["exp_avg"]

    def _beta_tensor(self, b1: float, b2: float, device: Any, dtype: torch.dtype) -> torch.Tensor:
        """b1, 1 - b1, b2, 1 - b2 rounded as torch rounds a scalar operand of `dtype`."""
        key = (b1, b2, device, dtype)
        if key not in self._betas:
            values = torch.tensor([b1, 1.0 - b1, b2, 1.0 - b2], dtype=dtype)
            self._betas[key] = values.to(device)
        return self._betas[key]

    def _launches(self, key: tuple[Any, ...], lists: list[list[torch.Tensor]]) -> list[_Table]:
        """The cached tables for these tensors, rebuilt when an address or a size changed; one
        table per tensor (launched in turn) where parameters overlap."""
        ps, gs, ms = lists
        ident = tuple(t.data_ptr() for t in (*ps, *gs, *ms)) + tuple(p.numel() for p in ps)
        cached = self._tables.get(key)
        if cached is None or cached[0] != ident:
            if overlapping(ps):
                tables = [build_table(*(lst[i : i + 1] for lst in lists)) for i in range(len(ps))]
            else:
                tables = [build_table(ps, gs, ms)]
            cached = self._tables[key] = (ident, tables)
        return cached[1]

    def _launch(
        self, group: dict[str, Any], key: tuple[Any, ...], lists: list[list[torch.Tensor]]
    ) -> None:
        device, p_dtype, m_dtype = key
        compute = torch.float64 if p_dtype == torch.float64 else torch.float32
        lr, wd = self._lr_wd(group, device, compute)
        b1, b2 = (float(b) for b in group["betas"])
        betas = self._beta_tensor(b1, b2, device, compute)
        for t in self._launches((id(group), *key), lists):
            _lion_kernel[(t.n_blocks,)](
                t.table, t.n_tensors, t.n_iter, lr, wd, betas,
                P_KIND=_KIND[p_dtype], M_KIND=_KIND[m_dtype], BLOCK=BLOCK,
                num_warps=4, enable_fp_fusion=False,
            )  # fmt: skip

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            batches: dict[tuple[Any, ...], list[list[torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self._momentum(p)
                if supports(p, p.grad, m):
                    lists = batches.setdefault((p.device, p.dtype, m.dtype), [[], [], []])
                    for lst, t in zip(lists, (p, p.grad, m), strict=True):
                        lst.append(t)
                else:
                    lr, wd = self._lr_wd(group, p.device, p.dtype)
                    b1, b2 = (float(b) for b in group["betas"])
                    _update(p, p.grad, m, lr, wd, b1, b2)
            for key, lists in batches.items():
                self._launch(group, key, lists)
        return loss


def build(groups: list[dict[str, Any]], hp: Any, momentum: str | None = None) -> TritonLion:
    """The registry's builder (`impl=lionbench_triton`, `lionbench_triton_bf16`)."""
    dtype = getattr(torch, momentum) if momentum else None
    return TritonLion(groups, lr=hp["lr"], betas=tuple(hp["betas"]), momentum_dtype=dtype)
