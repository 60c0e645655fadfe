"""ONNX Runtime backend (CPU): :class:`~.loader.SessionFromOnnx`, :class:`~.runner.OrtRunner`."""
