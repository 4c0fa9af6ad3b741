"""THE training loop (train.py) and its small parts: the loop's state and RNGs (state.py), the
clocks (timing.py), evaluation and targets (evaluation.py), the EMA of the weights (ema.py), the
device (device.py) and DDP (ddp.py). The loop knows no file: its records go to a `RunSink`."""
