"""``SessionFromOnnx``: an ONNX Runtime session with explicit, documented options."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from polygraphy.backend.base import BaseLoader

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger

ort = lazy_import("onnxruntime")

logger = get_logger(__name__)

QDQ_ACCURACY_KEY = "session.qdq_matmulnbits_accuracy_level"
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


# ONNX Runtime 1.32's QDQS8ToU8Transformer rewrites an int8 activation QuantizeLinear feeding a
# MatMul with blocked INT8 weights into a node whose output_dtype (INT8) contradicts its new uint8
# zero point, and the session fails to load ("gemm_input_reshape_arg_q ... does not match
# y_zero_point type UINT8"). With it disabled the graph runs, exactly.
DISABLED_OPTIMIZERS = ("QDQS8ToU8Transformer",)
ARENA_EXTEND = {"power_of_two": 0, "requested": 1}  # OrtArenaCfg arena_extend_strategy values
_REGISTERED_ARENA = []


def _register_cpu_arena(strategy: int) -> None:
    """Register one process-wide CPU arena allocator (ORT allows one per device per process)."""
    if _REGISTERED_ARENA:
        if _REGISTERED_ARENA[0] != strategy:
            raise QvggtError("a CPU arena with another extend strategy is already registered in this process")
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": strategy}))
    _REGISTERED_ARENA.append(strategy)


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
        mem_arena (bool): ORT's CPU memory arena. Defaults to True (without it VGGT-1B peaks
            higher, not lower: freed blocks are not reused).
        arena_extend (str): "power_of_two" (ORT's default: each arena extension doubles) or
            "requested" (extend by what is asked: less over-allocation). "requested" registers a
            process-wide CPU allocator with that setting and points the session at it.
            Defaults to "power_of_two".
        disabled_optimizers (sequence of str): ORT graph transformers to skip. Defaults to
            :data:`DISABLED_OPTIMIZERS` (works around an ORT bug, see there).
    """

    def __init__(self, path, *, accuracy_level: int = 0, threads: Optional[int] = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",), optimization: str = "all",
                 mem_arena: bool = True, arena_extend: str = "power_of_two",
                 disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS):
        self.path = Path(path)
        self.accuracy_level = int(accuracy_level)
        self.threads = threads
        self.providers = list(providers)
        self.mem_arena = mem_arena
        if optimization not in OPT_LEVELS:
            raise QvggtError(f"ORT optimization level must be one of {', '.join(OPT_LEVELS)}, got {optimization!r}")
        self.optimization = optimization
        if arena_extend not in ARENA_EXTEND:
            raise QvggtError(f"arena_extend must be one of {', '.join(ARENA_EXTEND)}, got {arena_extend!r}")
        self.arena_extend = arena_extend
        self.disabled_optimizers = list(disabled_optimizers)
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise QvggtError(f"accuracy level must be 0..4, got {accuracy_level}")

    def options(self):
        so = ort.SessionOptions()
        so.add_session_config_entry(QDQ_ACCURACY_KEY, str(self.accuracy_level))
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[self.optimization])
        so.enable_cpu_mem_arena = self.mem_arena
        if self.mem_arena and self.arena_extend == "requested":
            _register_cpu_arena(ARENA_EXTEND["requested"])
            so.add_session_config_entry("session.use_env_allocators", "1")
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3  # errors only; ORT's warnings go through our checks instead
        return so

    def call_impl(self):
        if not self.path.is_file():
            raise QvggtError(f"ONNX file not found: {self.path}")
        try:
            return ort.InferenceSession(str(self.path), self.options(), providers=self.providers,
                                        disabled_optimizers=self.disabled_optimizers or None)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise QvggtError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:300]})") from exc
