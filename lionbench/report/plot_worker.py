"""A process that draws report plots (report/figures.py, `PlotWorkers`): it imports matplotlib
and pandas at once, while the report reads its runs, then draws the figures it is sent on stdin
(a pickled list of `figures.Figure`) and exits 0; no figures (stdin closed empty): exits 0."""

from __future__ import annotations

import os
import pickle
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot  # noqa: F401  (the import this process exists to do early)

from lionbench.report import figures


def main() -> int:
    data = sys.stdin.buffer.read()
    for figure in pickle.loads(data) if data else []:
        figures.draw(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
