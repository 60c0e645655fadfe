"""Lazy imports of heavy or optional packages.

``ort = lazy_import("onnxruntime", hint="pip install onnxruntime")`` returns a handle whose first
attribute access imports the module; a missing package raises :class:`QvggtError` with the install
hint instead of an ImportError at import time of our own modules. This keeps ``import
qvggt_deploy.<anything>`` working with only torch and numpy installed, and lets ``qvggt infer``
run on a machine without TensorRT.
"""
from __future__ import annotations

import importlib
import types
from typing import Any, Optional

from qvggt_deploy.errors import QvggtError

# Each optional package comes with an extra of qvggt-deploy (pyproject.toml); the hint names it.
_HINTS = {
    "onnx": 'pip install "qvggt-deploy[onnx]"',
    "onnx_graphsurgeon": 'pip install "qvggt-deploy[onnx]"',
    "onnxscript": 'pip install "qvggt-deploy[onnx]"',
    "onnxruntime": 'pip install "qvggt-deploy[ort]" (CPU), "qvggt-deploy[ort-gpu]" (CUDA), or JetPack\'s '
                   'onnxruntime-gpu wheel on a Jetson',
    "polygraphy": "pip install polygraphy (a core dependency of qvggt-deploy)",
    "tensorrt": "TensorRT ships with JetPack on Jetson; on a desktop GPU: pip install tensorrt",
    "cuda.bindings": 'pip install "qvggt-deploy[cuda]" (NVIDIA\'s CUDA Python bindings)',
    "pycuda": "pip install pycuda",
    "safetensors": "pip install safetensors (a core dependency of qvggt-deploy)",
    "matplotlib": 'pip install "qvggt-deploy[plots]"',
    "trimesh": 'pip install "qvggt-deploy[plots]"',
    "yaml": 'pip install "qvggt-deploy[trt]" (pyyaml, for engine profiles)',
}


class LazyModule(types.ModuleType):
    """A module proxy that imports ``name`` on first attribute access."""

    def __init__(self, name: str, hint: Optional[str] = None):
        super().__init__(name)
        self.__dict__["_lazy_name"] = name
        self.__dict__["_lazy_hint"] = hint or _HINTS.get(name, f"pip install {name}")
        self.__dict__["_lazy_module"] = None

    def _load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = import_or_raise(self.__dict__["_lazy_name"], self.__dict__["_lazy_hint"])
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, item: str) -> Any:
        return getattr(self._load(), item)

    def __dir__(self):
        return dir(self._load())


def import_or_raise(name: str, hint: Optional[str] = None) -> types.ModuleType:
    """Import ``name`` now; raise :class:`QvggtError` with an install hint if it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = hint or _HINTS.get(name, f"pip install {name}")
        raise QvggtError(f"this feature needs the Python package '{name}' ({exc}); install it: {hint}") from exc


def lazy_import(name: str, hint: Optional[str] = None) -> LazyModule:
    """Return a handle that imports ``name`` on first use (see module docstring)."""
    return LazyModule(name, hint)


def is_available(name: str) -> bool:
    """True if ``name`` can be imported (imports it)."""
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False
