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

from typing import List, NamedTuple, Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.export.tensors import INT4, TensorStore, canonical_from_onnx_int4, constant_dtype, int4_raw, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

ACCURACY_LEVELS = (0, 1, 2, 3, 4)
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _blocked_int4_dq(dq):
    """(q const, scale const, block) if ``dq`` dequantizes a constant 2-D INT4 weight blocked along
    axis 0 with zero (or no) zero point; else None."""
    if dq is None or dq.op != "DequantizeLinear" or len(dq.inputs) < 2:
        return None
    q, s = dq.inputs[0], dq.inputs[1]
    if not isinstance(q, gs.Constant) or not isinstance(s, gs.Constant):
        return None
    if constant_dtype(q) != INT4 or len(q.shape) != 2 or len(s.shape) != 2:
        return None
    block = int(dq.attrs.get("block_size", 0))
    axis = int(dq.attrs.get("axis", 1))
    K, N = q.shape
    if axis not in (0, -2) or block < 16 or block & (block - 1) or K % block or tuple(s.shape) != (K // block, N):
        return None
    if len(dq.inputs) > 2 and dq.inputs[2].name:
        zp = dq.inputs[2]
        if not isinstance(zp, gs.Constant) or np.any(read_array(zp) != 0):
            return None
    if np.dtype(s.dtype) not in FLOAT_TYPES:
        return None
    return q, s, block


def matmulnbits_weights(q_const, s_kn: np.ndarray, block: int):
    """An ONNX INT4 ``[K, N]`` constant and ``[K/block, N]`` scales -> (B uint8
    ``[N, K/block, block/2]``, scales ``[N * K/block]``)."""
    K, N = q_const.shape
    packed = canonical_from_onnx_int4(int4_raw(q_const), K, N).reshape(N, K // block, block // 2)
    return packed, np.ascontiguousarray(s_kn.T).reshape(-1)


class Int4MatMul(NamedTuple):
    """One INT4 weight-only ``MatMul`` (+ bias ``Add``) found by :func:`int4_weight_matmuls`."""

    x: object  # gs.Variable, the activation
    q: object  # gs.Constant INT4 [K, N]
    s: object  # gs.Constant float [K/block, N]
    block: int
    bias: Optional[object]  # gs.Constant [N] of the scale's type, or None
    out: object  # the tensor the rewrite must produce (the Add's output when a bias was absorbed)
    tail: List[object]  # the nodes the rewrite replaces (MatMul, then the Add if absorbed)
    name: str  # the layer's node-name prefix


def int4_weight_matmuls(graph) -> List[Int4MatMul]:
    """Every ``MatMul(x, DequantizeLinear(q, s))`` with ``q`` a constant INT4 ``[K, N]``, ``s`` a
    constant ``[K/block, N]`` float scale, ``axis=0``, ``block_size`` a power of two >= 16, no or
    zero zero point, and ``x`` of the scale's type when known; a following ``Add`` of a constant
    ``[N]`` bias (not a graph output) is included."""
    found = []
    for i, mm in enumerate([n for n in graph.nodes if n.op == "MatMul"]):
        x, w = mm.inputs
        match = _blocked_int4_dq(w.inputs[0] if w.inputs else None)
        if match is None:
            continue
        q, s, block = match
        if x.dtype is not None and np.dtype(x.dtype) != np.dtype(s.dtype):
            logger.debug("skipping %s: input %s vs scales %s", mm.name, x.dtype, s.dtype)
            continue
        N = q.shape[1]
        out, tail, bias = mm.outputs[0], [mm], None
        consumers = out.outputs
        if len(consumers) == 1 and consumers[0].op == "Add" and out not in graph.outputs:
            add = consumers[0]
            other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            if isinstance(other, gs.Constant) and tuple(other.shape) == (N,) and np.dtype(other.dtype) == np.dtype(s.dtype):
                bias, out = other, add.outputs[0]
                tail.append(add)
        found.append(Int4MatMul(x, q, s, block, bias, out, tail, (mm.name or f"int4_matmul_{i}").rsplit("/", 1)[0]))
    return found


def detach(nodes) -> None:
    """Disconnect ``nodes`` (their outputs get a new producer; cleanup removes them)."""
    for node in nodes:
        node.outputs.clear()
        node.inputs.clear()


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
