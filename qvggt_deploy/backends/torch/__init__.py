"""PyTorch backend: :class:`~.loader.ModelFromPreset`, :class:`~.runner.TorchRunner`."""
