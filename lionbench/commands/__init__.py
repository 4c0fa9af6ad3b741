"""The commands besides `run` and `report`: `sweep` (sweep.py, with grid.py, manifest.py and
screen.py), `study claims` (study.py), `bench optim` and `bench train`, `prepare text`, `list`,
and the TAB completion of overrides (completion.py). Each starts from cli.py and goes down to
lionbench/run/ for the runs it needs."""
