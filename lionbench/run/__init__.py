"""One run, from the command line to its directory: launch.py (the Hydra job, after every config
is checked), runner.py (skip, resume, train through loop/, record), outputs.py (where the loop's
records go), rundir.py (the run directory: the only module that knows its files and derives a
run's status), checkpoint.py, lock.py, torchrun.py and worker.py (`dist.nproc > 1`), slurm.py
and revision.py (what a run records about where it ran). Nothing here imports torch at import
time of the package."""
