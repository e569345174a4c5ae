"""Training: the accumulating training set, the loop's parts (optimizer, precision, checkpoints, DDP), calibration, domain adaptation."""
