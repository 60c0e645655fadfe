"""Training VGGT on generated scenes (the project's own weights: no VGGT checkpoint is downloadable).

Entry points: :func:`train` with a :class:`TrainConfig`; losses in :mod:`.losses`, batches and the
curriculum in :mod:`.data`.
"""
from qvggt_deploy.train.loop import TrainConfig, lr_at, train

__all__ = ["TrainConfig", "lr_at", "train"]
