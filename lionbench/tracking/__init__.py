"""Experiment tracking: Weights & Biases. `wandb_run.py` logs one run (network I/O only in
`WandbLogger.start`, never in a constructor); `wandb_groups.py` joins the finished runs a sweep
reuses to its group. Neither knows a run directory's files: callers pass what W&B needs."""
