"""``SessionFromOnnx``: an ONNX Runtime session with explicit, documented options."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from qvggt_deploy.backends.base import BaseLoader
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger

ort = lazy_import("onnxruntime")

logger = get_logger(__name__)

QDQ_ACCURACY_KEY = "session.qdq_matmulnbits_accuracy_level"
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


class SessionFromOnnx(BaseLoader):
    """Build an ``onnxruntime.InferenceSession`` for an exported file.

    Args:
        path (path): the ``.onnx`` file (its ``.onnx.data`` next to it, if any).
        accuracy_level (int): ``session.qdq_matmulnbits_accuracy_level``, always set explicitly:
            ORT's default fuses INT4 ``DequantizeLinear + MatMul`` into MatMulNBits with int8
            activations (level 4); 0 keeps QDQ graphs exact. ``MatMulNBits`` nodes written by
            the exporter carry their own level. Defaults to 0.
        threads (int, optional): intra-op threads. Defaults to ORT's choice (all cores).
        providers (sequence of str): execution providers. Defaults to CPU only.
        optimization (str): "disable", "basic", "extended" or "all". Defaults to "all".
        mem_arena (bool): ORT's CPU memory arena (faster, higher peak RSS). Defaults to True.
    """

    def __init__(self, path, *, accuracy_level: int = 0, threads: Optional[int] = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",), optimization: str = "all",
                 mem_arena: bool = True):
        self.path = Path(path)
        self.accuracy_level = int(accuracy_level)
        self.threads = threads
        self.providers = list(providers)
        self.mem_arena = mem_arena
        if optimization not in OPT_LEVELS:
            raise QvggtError(f"ORT optimization level must be one of {', '.join(OPT_LEVELS)}, got {optimization!r}")
        self.optimization = optimization
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise QvggtError(f"accuracy level must be 0..4, got {accuracy_level}")

    def options(self):
        so = ort.SessionOptions()
        so.add_session_config_entry(QDQ_ACCURACY_KEY, str(self.accuracy_level))
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[self.optimization])
        so.enable_cpu_mem_arena = self.mem_arena
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3  # errors only; ORT's warnings go through our checks instead
        return so

    def call_impl(self):
        if not self.path.is_file():
            raise QvggtError(f"ONNX file not found: {self.path}")
        try:
            return ort.InferenceSession(str(self.path), self.options(), providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise QvggtError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:300]})") from exc
