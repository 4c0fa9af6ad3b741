"""Harness overhead: `lionbench run` against a minimal hand-written loop on the same config.

The hand loop builds the same parts the way a user would by hand (the recipe's model class from
`lionbench.recipes`, the same seeded builtin batches, batch size, precision, torch.compile and
optimizer, the same clipping and schedule) and does forward, backward, clip, step, schedule,
zero_grad per step with nothing else: no loss accumulation, no logging, no timers: nanoGPT's
`train.py` reduced to its iteration (tests/test_nanogpt_parity.py shows that the GPT-2 recipe's
model, batches, schedule and AdamW compute what a nanoGPT-style loop computes, bit for bit).
Both are timed over the same steps after the same warmup (a device synchronize at both edges),
each in a fresh process, interleaved over repeats (the order rotated by one arm per repeat);
the medians, the time per iteration and the ratios to the hand loop are printed (docs/design.md,
metric definitions: steps/s over the timed window). `--variant OVERRIDES` adds a `lionbench run`
arm with more overrides, e.g. `--variant recipe.model.gelu=tanh`: what GPT-2's tanh GELU costs.

    python benchmarks/overhead.py --scale small --repeats 3 [--out overhead.json] \
        [--variant "recipe.model.gelu=tanh"] [overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def hand_loop(overrides: list[str], steps: int, warmup: int) -> float:
    """Steps/s of the minimal loop over steps warmup..steps."""
    import torch
    from omegaconf import OmegaConf

    from lionbench import config
    from lionbench.loop.device import autocast, configure, resolve_device
    from lionbench.loop.train import derive_seed
    from lionbench.optim import build_optimizer
    from lionbench.optim.schedule import build_scheduler
    from lionbench.recipe import load_recipe

    cfg = config.compose(overrides)
    OmegaConf.resolve(cfg)
    device = resolve_device(str(cfg.device))
    recipe = load_recipe(cfg)
    torch.manual_seed(derive_seed(int(cfg.seed), "init"))
    model = recipe.build_model().to(device)
    batch_size = int(cfg.train.batch_size)
    data = recipe.build_data(batch_size, batch_size, device, derive_seed(int(cfg.seed), "data"))
    configure(device)
    opt = build_optimizer(cfg.optim, model)
    sched = build_scheduler(opt, cfg.sched, steps)
    step_model = torch.compile(model) if cfg.compile else model
    amp = autocast(str(cfg.precision), device)
    clip = float(cfg.train.grad_clip)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    model.train()
    t0 = 0.0
    for step in range(steps):
        if step == warmup:
            sync()
            t0 = time.perf_counter()
        with amp:
            loss, _ = recipe.loss(step_model, data.train.next())
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    sync()
    return (steps - warmup) / (time.perf_counter() - t0)


def lionbench_run(overrides: list[str], steps: int, warmup: int) -> float:
    """Steps/s that `lionbench run` records for the same config (its timed window)."""
    with tempfile.TemporaryDirectory(prefix="lionbench-overhead-") as tmp:
        args = [
            *overrides,
            f"results_dir={tmp}",
            "logger.wandb.mode=disabled",
            f"train.eval_interval={steps}",
            f"train.log_interval={steps}",
            "train.eval_batches=1",
            f"timing.warmup_steps={warmup}",
            "checkpoint.interval=0",
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "lionbench", "run", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "WANDB_MODE": "disabled"},
        )
        found = list(Path(tmp).glob("*/*/summary.json"))
        if proc.returncode != 0 or not found:
            sys.exit(f"lionbench run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return float(json.loads(found[0].read_text())["steps_per_s"])


def hand_in_fresh_process(overrides: list[str], steps: int, warmup: int) -> float:
    cmd = [sys.executable, __file__, "--hand", "--steps", str(steps), "--warmup", str(warmup)]
    proc = subprocess.run([*cmd, *overrides], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"hand loop failed: {proc.stderr.strip()[-500:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Interleaved: repeat r runs every arm once, the order rotated by r (with two arms, the
    hand loop first on even repeats and second on odd), so that a slow spell of a shared
    machine falls on every arm alike."""
    arms: dict[str, tuple[Any, list[str]]] = {
        "hand": (hand_in_fresh_process, overrides),
        "lionbench": (lionbench_run, overrides),
    }
    for variant in args.variant:
        arms[f"lionbench {variant}"] = (lionbench_run, [*overrides, *variant.split()])
    names = list(arms)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, arm_overrides = arms[name]
            runs[name].append(fn(arm_overrides, args.steps, args.warmup))
            print(f"repeat {r + 1} {name}: {runs[name][-1]:.4g} steps/s", file=sys.stderr)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    hand, lb = medians["hand"], medians["lionbench"]
    return {
        "overrides": overrides,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "repeats": args.repeats,
        "hand_steps_per_s": hand,
        "lionbench_steps_per_s": lb,
        "ratio": lb / hand,
        "hand_runs": runs["hand"],
        "lionbench_runs": runs["lionbench"],
        "arms": {
            name: {
                "steps_per_s": medians[name],
                "ms_per_step": 1000.0 / medians[name],
                "vs_hand": medians[name] / hand,
                "runs": runs[name],
            }
            for name in names
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="gpt2")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="another `lionbench run` arm: more overrides, space-separated (repeatable)",
    )
    parser.add_argument("--hand", action="store_true", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.hand:  # the child process of one hand-loop measurement
        print(hand_loop(overrides, args.steps, args.warmup))
        return
    if args.repeats < 1 or args.steps <= args.warmup:
        parser.error("--repeats must be >= 1 and --steps above --warmup")
    overrides = [
        f"recipe={args.recipe}",
        f"scale={args.scale}",
        f"train.steps={args.steps}",
        *overrides,
    ]
    result = measure(args, overrides)
    print(f"{' '.join(overrides)} (medians of {args.repeats} interleaved runs):")
    for name, arm in result["arms"].items():
        print(
            f"  {name}: {arm['steps_per_s']:.4g} steps/s, {arm['ms_per_step']:.2f} ms per "
            f"iteration, {arm['vs_hand']:.3f} x the hand loop's speed"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
