"""``int4-to-qgemm``: INT4 weight-only MatMuls -> ``com.microsoft.DynamicQuantizeMatMul`` (int8 x int8).

ONNX Runtime's fastest CPU GEMM is its u8s8 QGEMM (AVX2, AVX-VNNI, AVX512-VNNI and AMX kernels in
MLAS): on this project's 2-core Xeon with AMX a VGGT-1B fc1 (2748 x 1024 x 4096) takes 8-11 ms
against 70-95 ms for fp32 SGEMM and 52-85 ms for ``MatMulNBits`` with int8 activations (level 4).
It needs int8 weights with one scale per output channel, so this pass re-grids each layer:

    w8[k, n] = round(q[k, n] * s[k // block, n] / c[n]),   c[n] = max_k |q[k, n] * s[k // block, n]| / 127

The added weight error is at most ``c[n] / 2``, about 1/16 of the INT4 step of the layer's
coarsest block; the activations are quantized to uint8 per tensor at run time by the kernel. It is
an approximate mode (like ``accuracy_level`` 4), measured in ``docs/export.md``. The int8
weights are stored (the file is ~1.7x the INT4 one): a chain of constant ops from the INT4
weights that ONNX Runtime would fold at load keeps every intermediate fp32 copy until folding
ends (VGGT-1B passed 12 GB before we stopped it).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from qvggt_deploy.export.tensors import TensorStore, int4_raw, read_array, unpack_onnx_int4
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.int4_to_matmulnbits import detach, int4_weight_matmuls
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)


def _dequantize(q: np.ndarray, s: np.ndarray, block: int) -> np.ndarray:
    """INT4 ``q [K, N]`` with ``[K/block, N]`` scales -> fp32 ``q * s`` ``[K, N]``."""
    K, N = q.shape
    return (q.astype(np.float32).reshape(K // block, block, N) * s.astype(np.float32)[:, None, :]).reshape(K, N)


def _scales_of(w: np.ndarray) -> np.ndarray:
    c = np.abs(w).max(axis=0) / np.float32(127)
    return np.where(c > 0, c, np.float32(1)).astype(np.float32)


def channel_scales(q: np.ndarray, s: np.ndarray, block: int) -> np.ndarray:
    """Per-output-channel int8 scales ``c[n] = max_k |q * s| / 127`` (fp32) of an INT4 ``[K, N]``
    weight with ``[K/block, N]`` scales; an all-zero channel gets 1 (its weights stay 0)."""
    return _scales_of(_dequantize(q, s, block))


@register_pass("int4-to-qgemm")
def int4_to_qgemm(graph, *, store: Optional[TensorStore] = None):
    """Rewrite each INT4 weight-only MatMul (see ``int4_weight_matmuls``) as ``DynamicQuantizeMatMul``
    on its re-gridded int8 weights (absorbing a following bias Add). A layer used by several
    MatMuls gets one int8 weight.

    Preconditions: fp32 activations and scales (the kernel's A and b_scale are float); weights are
    ``gs.Constant`` as the exporter makes them. Never touched: other MatMuls, the INT4 constants.

    Args:
        graph (gs.Graph): modified in place.
        store (TensorStore): where the int8 weights and scales go. Defaults to in memory.
    """
    store = store or TensorStore()
    cache = {}
    matches = [m for m in int4_weight_matmuls(graph) if np.dtype(m.s.dtype) == np.float32]
    for m in matches:
        key = (m.q.name, m.s.name)
        if key not in cache:
            cache[key] = _int8_weight(m, store)
        w8, c = cache[key]
        inputs = [m.x, w8, c] + ([gs.Variable.empty(), m.bias] if m.bias is not None else [])
        detach(m.tail)
        graph.nodes.append(gs.Node("DynamicQuantizeMatMul", name=f"{m.name}/DynamicQuantizeMatMul",
                                   domain="com.microsoft", inputs=inputs, outputs=[m.out]))
    logger.debug("int4-to-qgemm: %d MatMuls rewritten", len(matches))
    return graph.cleanup().toposort()


def int8_weights(q: np.ndarray, s: np.ndarray, block: int):
    """INT4 ``q [K, N]`` with ``[K/block, N]`` scales -> (int8 ``[K, N]``, fp32 channel scales ``[N]``)."""
    w = _dequantize(q, s, block)
    c = _scales_of(w)
    return np.round(w / c).astype(np.int8), c


def _int8_weight(m, store):
    """The re-gridded int8 weight and its channel scales, as stored constants."""
    K, N = m.q.shape
    w8, c = int8_weights(unpack_onnx_int4(int4_raw(m.q), (K, N)), read_array(m.s), m.block)
    return store.add(f"{m.q.name}.int8", w8), store.add(f"{m.q.name}.channel_scale", c)
