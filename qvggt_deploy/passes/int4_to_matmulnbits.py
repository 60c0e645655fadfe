"""``int4-to-matmulnbits``: INT4 ``DequantizeLinear + MatMul (+ Add bias)`` -> ``com.microsoft.MatMulNBits``.

ONNX Runtime's CPU kernel for 4-bit weights. Layout (ORT contrib op, since 1.17; bias input since
1.20): ``A [..., K]``, ``B`` uint8 ``[N, K/block, block/2]`` with element ``k`` of row ``n`` in
nibble ``k % 2`` (low first) stored as ``q + 8`` (no zero-point input: the implicit zero point is
8), ``scales [N * K/block]`` of A's type, optional ``bias [N]``; attributes ``K``, ``N``,
``bits=4``, ``block_size``, ``accuracy_level``. That B layout is byte for byte the canonical recipe
format (:func:`qvggt_deploy.quant.quantizer.pack_int4` reshaped), so the repacking here is the
exact inverse of the ONNX INT4 one.

``accuracy_level`` 0 (attribute absent) computes in the input type: fp32 math on fp32 inputs,
which reproduces ``MatMul(x, q * s)`` exactly. 4 quantizes the activations to int8 per block
(faster with VNNI, ~1e-2 relative error per GEMM). A MatMulNBits without the attribute is level
0 whatever the session options say, so the level is written here.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.int4 import detach, int4_weight_matmuls
from qvggt_deploy.graph.tensors import TensorStore, canonical_from_onnx_int4, int4_raw, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

ACCURACY_LEVELS = (0, 1, 2, 3, 4)


def matmulnbits_weights(q_const, s_kn: np.ndarray, block: int):
    """An ONNX INT4 ``[K, N]`` constant and ``[K/block, N]`` scales -> (B uint8
    ``[N, K/block, block/2]``, scales ``[N * K/block]``)."""
    K, N = q_const.shape
    packed = canonical_from_onnx_int4(int4_raw(q_const), K, N).reshape(N, K // block, block // 2)
    return packed, np.ascontiguousarray(s_kn.T).reshape(-1)


@register_pass("int4-to-matmulnbits")
def int4_to_matmulnbits(graph, *, accuracy_level: int = 0, store: Optional[TensorStore] = None):
    """Rewrite each INT4 weight-only MatMul (:func:`int4_weight_matmuls`) as ``MatMulNBits``
    (absorbing a following bias Add). A layer used by several MatMuls (the camera trunk's
    iterations) gets one B and one scales initializer.

    Preconditions: weights are ``gs.Constant`` with ``LazyValues`` (as the exporter makes them).
    Never touched: other MatMuls (float, INT8, activation x activation), the INT4 constants'
    ``.values`` (read raw), DQ nodes still used elsewhere.

    Args:
        graph (gs.Graph): modified in place.
        accuracy_level (int): 0 = exact (fp32 math), 4 = int8 activations. Defaults to 0.
        store (TensorStore): where the new weights go. Defaults to in memory.
    """
    if accuracy_level not in ACCURACY_LEVELS:
        raise QvggtError(f"MatMulNBits accuracy_level must be one of {ACCURACY_LEVELS}, got {accuracy_level}")
    store = store or TensorStore()
    cache = {}
    matches = int4_weight_matmuls(graph)
    for m in matches:
        K, N = m.q.shape
        key = (m.q.name, m.s.name)
        if key not in cache:
            packed, scales = matmulnbits_weights(m.q, read_array(m.s), m.block)
            cache[key] = (store.add(f"{m.q.name}.nbits", packed), store.add(f"{m.s.name}.nbits", scales.astype(m.s.dtype)))
        b_const, s_const = cache[key]
        inputs = [m.x, b_const, s_const]
        if m.bias is not None:
            inputs += [gs.Variable.empty(), gs.Variable.empty(), m.bias]
        attrs = {"K": int(K), "N": int(N), "bits": 4, "block_size": int(m.block)}
        if accuracy_level:
            attrs["accuracy_level"] = int(accuracy_level)
        detach(m.tail)
        graph.nodes.append(gs.Node("MatMulNBits", name=f"{m.name}/MatMulNBits", domain="com.microsoft", inputs=inputs,
                                   outputs=[m.out], attrs=attrs))
    logger.debug("int4-to-matmulnbits: %d MatMuls rewritten", len(matches))
    return graph.cleanup().toposort()
