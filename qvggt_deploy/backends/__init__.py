"""Inference backends behind one interface (Polygraphy runners): PyTorch, ONNX Runtime, TensorRT.

Every backend exposes the same I/O names (see :mod:`qvggt_deploy.graph.io`) so that
``qvggt check`` and ``qvggt bench`` can compare and time them side by side. Backends are looked up
by name through :data:`BACKENDS` and imported lazily: ``trt`` works only where ``tensorrt``
imports, and the others never import it.
"""
from __future__ import annotations

import importlib

from qvggt_deploy.errors import QvggtError

# name -> "module:factory". Each factory is documented in its module.
BACKENDS = {
    "torch": "qvggt_deploy.backends.torch.runner:TorchRunner",
    "ort": "qvggt_deploy.backends.onnxrt.runner:OrtRunner",
    "trt": "qvggt_deploy.backends.trt.runner:TrtRunner",
}


def get_backend(name: str):
    """Return the runner class registered as ``name`` (imports its module now)."""
    if name not in BACKENDS:
        raise QvggtError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, attr = BACKENDS[name].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)
