"""Data sources shared by recipes: builtin generated data, token files, synthetic tensors.

A recipe turns its data source into a `BatchStream` (training batches, drawn with the run's data
generator, resumable) and a fixed list of eval batches (drawn from the eval seed, identical for
every run and optimizer).
"""
