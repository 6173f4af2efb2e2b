"""The training engine: configuration, devices, run folders, checkpoints, the trainer and its epoch loop,
resume, DDP, the whole-image predictor and the metrics that validation shares with ``s2m evaluate``."""
