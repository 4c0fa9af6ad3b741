"""Time `lionbench report` over 1,000 generated run directories (not part of the test suite).

    python benchmarks/report_1000.py [--runs 1000] [--dir /tmp/lionbench-report-bench]

Writes plausible run directories (config.yaml, metrics.jsonl with 60 points, summary.json) for a
Lion ratio sweep over many seeds plus AdamW, then runs the report with --out and prints the time.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml


def write_runs(root: Path, n_runs: int) -> None:
    from lionbench import config

    base = config.compose(["scale=smoke", f"results_dir={root}"])
    config.validate(base)
    from omegaconf import OmegaConf

    template = OmegaConf.to_container(base, resolve=True)
    ratios = [None, 3.0, 5.0, 10.0]  # None: AdamW
    rng = np.random.default_rng(0)
    for i in range(n_runs):
        ratio, seed = ratios[i % len(ratios)], i // len(ratios)
        cfg = json.loads(json.dumps(template))
        cfg["seed"] = seed
        if ratio is None:
            cfg["optim"] = {
                "name": "adamw",
                "impl": "fused",
                "lr": 3e-3,
                "weight_decay": 0.1,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
            }
        else:
            cfg["optim"] = {
                "name": "lion",
                "impl": "lion_pytorch_foreach",
                "ratio": ratio,
                "lr": 3e-3 / ratio,
                "weight_decay": 0.1 * ratio,
                "betas": [0.9, 0.99],
            }
        d = root / "gpt2" / f"run-{i:05d}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        speed = 1.0 + 0.2 * (ratio or 0) / 10
        lines, loss = [], 4.8
        for step in range(0, 301, 10):
            loss = 1.0 + 3.8 * math.exp(-step / (80 * speed)) + rng.normal(0, 0.01)
            lines.append({"step": step, "split": "train", "loss": loss, "time_s": step * 0.2})
            if step % 20 == 0:
                lines.append({"step": step, "split": "val", "loss": loss, "time_s": step * 0.2})
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
        summary = {
            "status": "completed",
            "device": "cpu",
            "final_val_loss": loss,
            "best_val_loss": loss,
            "loss_floor": 1.0,
            "steps_per_s": 5 + rng.normal(),
            "examples_per_s": 160.0,
            "opt_step_ms": 2.0,
            "peak_mem_bytes": 1e9,
            "optimizer_state_bytes": 3.5e6 if ratio else 7e6,
            "n_params": 875264,
            "config": cfg,  # as the runner writes it: the report then reads no YAML
        }
        (d / "summary.json").write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/lionbench-report-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    write_runs(args.dir / "results", args.runs)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lionbench",
            "report",
            str(args.dir / "results"),
            "--out",
            str(args.dir / "report"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"lionbench report over {args.runs} run directories: {time.perf_counter() - t0:.2f} s "
        f"(including interpreter start-up)"
    )


if __name__ == "__main__":
    main()
