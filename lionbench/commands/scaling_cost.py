"""What a scaling study will cost, said before anything trains: the runs (selection, at most
the extensions, confirmation), the data they train on, and the time on this device, from a short
probe run per size (AdamW, `PROBE_STEPS` steps, in a temporary directory). A probe is kept in
`_studies/probes/<name>.json` with the identity of what it ran, so a resumed study does not
probe again.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lionbench import config
from lionbench.errors import UserError
from lionbench.files import atomic_write_json
from lionbench.record import Status, digest, identity
from lionbench.run.rundir import STUDIES, manifest_path

if TYPE_CHECKING:
    from lionbench.commands.scaling_grid import Point
    from lionbench.commands.tuning import Run, Sweep

PROBE_FIELDS = ("steps_per_s", "overhead_s", "eval_s", "contended")
PROBE_STEPS = 40  # the first timing.warmup_steps are excluded from the rate
PROBE_EVALS = 2  # at step 0 and at the end
WARMUP_STEPS = 10  # an untimed run before the first probe


@dataclass(frozen=True)
class Probe:
    """A size's measured speed: steady steps/s, the time of a run outside its steps (setup,
    one evaluation, writing), and of one more evaluation (about a third of a step per batch)."""

    steps_per_s: float
    overhead_s: float
    eval_s: float
    contended: str = ""  # why its timed window was contended (loop/exposure.py); "" when not

    def run_s(self, steps: int, evals: int) -> float:
        """A run of `steps` with `evals` evaluations (the probe's own run made PROBE_EVALS)."""
        more_evals = max(0, evals - PROBE_EVALS)
        return self.overhead_s + steps / self.steps_per_s + more_evals * self.eval_s


def probe_config(
    sw: Sweep, size: str, results_dir: str, steps: int = PROBE_STEPS, timed: bool = True
) -> Any:
    """The probe's run: the study's overrides at `size`, AdamW, a few steps, nothing logged
    (`timed`: some of its steps must be timed)."""
    from lionbench.config.ladder import sized_config

    flags, plain = config.split_args(sw.overrides)
    cfg = sized_config(
        [*plain, f"optim={sw.baseline}", f"train.steps={steps}", f"train.eval_interval={steps}",
         "sched.warmup_steps=0", f"results_dir={results_dir}", "logger.wandb.mode=disabled",
         "checkpoint.interval=0"],
        size, config.config_dirs(flags),
    )  # fmt: skip
    warm = int(cfg.timing.warmup_steps)
    if timed and steps <= warm:
        raise UserError(
            f"--probe-steps {steps} times nothing: timing.warmup_steps={warm} are left out "
            f"(accepted: more than {warm}, or 0 for no time estimate)"
        )
    return cfg


def train_quietly(cfg: Any) -> Any:
    """Train a probe run, its summary table silenced; its summary."""
    from lionbench.run import runner

    with contextlib.redirect_stdout(io.StringIO()):
        result = runner.run(cfg)
    if result.status != Status.COMPLETED:
        raise UserError(
            f"the probe run of recipe.size={cfg.recipe.size} ended {result.status}: "
            f"{result.summary.error or 'no error recorded'} (--probe-steps 0: no probe)"
        )
    return result.summary


def measure(cfg: Any) -> Probe:
    """Train the probe run and read its speed."""
    s, steps = train_quietly(cfg), int(cfg.train.steps)
    if not (s.steps_per_s and s.wall_s):
        raise UserError(f"the probe run of recipe.size={cfg.recipe.size} recorded no speed")
    batches = int(cfg.train.eval_batches) if str(cfg.train.eval_batches).isdigit() else 1
    return Probe(
        steps_per_s=float(s.steps_per_s),
        overhead_s=max(0.0, float(s.wall_s) - steps / float(s.steps_per_s)),
        eval_s=batches / (3.0 * float(s.steps_per_s)),
        contended=(s.timing_note or "contended") if s.timing_contended else "",
    )


def on_cluster(sw: Sweep) -> bool:
    """The runs go to SLURM's nodes: a probe here would time the wrong machine (a login node)."""
    return any(o.startswith("hydra/launcher=submitit_slurm") for o in [*sw.overrides, *sw.extra])


def probe_sizes(sw: Sweep, points: list[Point], steps: int = PROBE_STEPS) -> dict[str, Probe]:
    """Each size's probe: measured now, or the one kept for the same run on this device (its
    type and name: another GPU's timings are not this one's); none when the runs go to a
    cluster or `steps` is 0."""
    from lionbench.loop.device import device_name, resolve_device

    if on_cluster(sw) or steps == 0:
        return {}

    path = manifest_path(sw.results_dir, STUDIES, f"probes/{sw.name}")
    kept = read_kept(path)
    out, warm = {}, False
    with tempfile.TemporaryDirectory(prefix="lionbench-probe-") as tmp:
        for size in dict.fromkeys(p.size for p in points):
            cfg = probe_config(sw, size, tmp, steps)
            plain = config_dict(cfg)
            device = resolve_device(cfg.device)
            key = digest([identity(plain, device.type), device_name(device)])
            if key in kept:
                out[size] = Probe(**{k: v for k, v in kept[key].items() if k in PROBE_FIELDS})
                continue
            print(f"study {sw.name}: probing {size} ({steps} steps; --probe-steps 0: no "
                  f"time estimate)", flush=True)  # fmt: skip
            if not warm:  # what a process pays once (imports, kernels, data) is no run's cost
                train_quietly(probe_config(sw, size, tmp, min(WARMUP_STEPS, steps), False))
                warm = True
            out[size] = measure(cfg)
            if not out[size].contended:  # a contended probe is used once, never kept
                kept[key] = out[size].__dict__
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, kept)
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return plain


def read_kept(path: Any) -> dict[str, Any]:
    """Probes kept by an earlier invocation ({} when none, or unreadable: probe again)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class Cost:
    """The plan's runs per point and the seconds each run takes on this device."""

    rows: list[tuple[Point, int, int, int, float]] = field(default_factory=list)
    # (point, runs without extensions, extension runs at most, confirmation runs, s per run)
    launch_s: float = 0.0  # composing and checking a run before it starts
    unpriced: str = ""  # why there is no time estimate (none: there is one)
    contended: list[str] = field(default_factory=list)  # sizes whose probe was contended

    def run_s(self, point: Point) -> float:
        return next(s for p, *_, s in self.rows if p == point) + self.launch_s

    def of_runs(self, runs: list[tuple[Point, Run]]) -> float:
        """The estimated seconds of these runs (those a study invocation trained)."""
        return sum(self.run_s(p) for p, _ in runs)

    def lines(self, unit: str) -> list[str]:
        """The plan, point by point, and its totals: runs, data and time."""
        out, low, high, data, runs_low, runs_high = [], 0.0, 0.0, 0, 0, 0
        for p, base, ext, conf, s in self.rows:
            n = base + conf
            per = s + self.launch_s
            each = f", {per:.0f} s a run" if math.isfinite(per) else ""
            passes = f", {p.passes:.2g} passes over the train split" if p.passes else ""
            out.append(
                f"  {p.label}: {p.params:,} parameters, {p.data:,} {unit} ({p.steps:,} "
                f"steps{passes}); {n} runs (+ up to {ext} extension runs){each}"
            )
            low, high = low + n * per, high + (n + ext) * per
            runs_low, runs_high, data = runs_low + n, runs_high + n + ext, data + n * p.data
        when = (
            f"about {duration(low)} on this device (up to {duration(high)}), one run at a "
            f"time; a parallel launcher divides it by the runs it runs at once"
            if math.isfinite(low)
            else f"time not estimated: {self.unpriced}"
        )
        out.append(f"total: {runs_low} runs (up to {runs_high} with extensions), {data:,} {unit}, "
                   f"{when}")  # fmt: skip
        if self.contended:
            out.append(
                f"warning: the machine was busy while probing {', '.join(self.contended)}: the "
                f"estimate is too long (run the plan again on a quiet machine; a busy probe is "
                f"not kept)"
            )
        return out


def estimate(sw: Sweep, points: list[Point], probes: dict[str, Probe]) -> Cost:
    """Runs per point from the grids and seeds; seconds per run from the probes; the launch
    cost from composing one point's config here."""
    started = time.monotonic()
    probe_config(sw, points[0].size, str(sw.results_dir), timed=False)
    launch_s = 2 * (time.monotonic() - started)  # the launcher's check, then Hydra's own
    unpriced = (
        "the runs go to SLURM's nodes (a probe here would time this machine)"
        if on_cluster(sw)
        else "--probe-steps 0"
    )
    cost = Cost(launch_s=launch_s, unpriced="" if probes else unpriced)
    cost.contended = [size for size, probe in probes.items() if probe.contended]
    seeds, fresh = len(sw.seeds), len(sw.confirm_seeds)
    for p in points:
        base = sum(len(v) for v in sw.initial.values()) * seeds
        ext = sw.max_extend * len(sw.optims) * seeds
        probe = probes.get(p.size)
        seconds = probe.run_s(p.steps, p.evals) if probe else math.nan
        cost.rows.append((p, base, ext, len(sw.optims) * fresh, seconds))
    return cost


def duration(seconds: float) -> str:
    """`45 s` under two minutes, else `12 min` (`0 min` would say nothing of a small study)."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
