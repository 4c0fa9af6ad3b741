"""Test hooks for the `slurm` tests, active only when their variable is set. Put this directory
on PYTHONPATH (sbatch passes the environment on to the job), then:

- LIONBENCH_TEST_FAIL=lion,RATIO,SEED: that one run raises inside training, in whichever process
  on the cluster trains it (an injected failure).
- LIONBENCH_TEST_REQUEUE=1: right after its first periodic checkpoint, the first attempt of a
  SLURM job asks SLURM to requeue it (`scontrol requeue $SLURM_JOB_ID`, what an administrator or a
  preempting job does) and waits until SLURM's SIGTERM has arrived, so that the preemption lands
  mid-run on any machine, however fast.
"""

import os

if os.environ.get("LIONBENCH_TEST_FAIL"):
    from lionbench.loop import train as _train

    _optim, _ratio, _seed = os.environ["LIONBENCH_TEST_FAIL"].split(",")
    _real_train = _train.train

    def _flaky(cfg, *args, **kwargs):
        o = cfg.optim
        ratio = float(o.get("ratio") or 0)
        if o.name == _optim and ratio == float(_ratio) and cfg.seed == int(_seed):
            raise RuntimeError("injected failure")
        return _real_train(cfg, *args, **kwargs)

    _train.train = _flaky

if os.environ.get("LIONBENCH_TEST_REQUEUE") and os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
    import subprocess
    import time

    from lionbench import signals as _signals
    from lionbench.run import checkpoint as _checkpoint

    _real_save, _real_handle = _checkpoint.save, _signals.StopFlag._handle
    _signalled = []

    def _handle(self, signum, frame):
        _signalled.append(signum)
        return _real_handle(self, signum, frame)

    def _save_then_requeue(rundir, state):
        _real_save(rundir, state)
        if _signalled or os.environ.get("_LIONBENCH_TEST_REQUEUED"):
            return
        os.environ["_LIONBENCH_TEST_REQUEUED"] = "1"
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True)
        deadline = time.monotonic() + 120
        while not _signalled and time.monotonic() < deadline:
            time.sleep(0.05)

    _signals.StopFlag._handle = _handle
    _checkpoint.save = _save_then_requeue
