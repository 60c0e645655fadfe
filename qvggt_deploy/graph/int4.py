"""The one INT4 weight-only GEMM matcher: ``MatMul(x, DequantizeLinear(q, s)) (+ Add bias)``.

Every pass that rewrites INT4 GEMMs (``int4-to-matmulnbits``, ``int4-to-qgemm``, ``w4a16-plugin``)
finds them here, so they agree on what an INT4 GEMM is: ``q`` a constant INT4 ``[K, N]`` blocked
along K, ``s`` constant float scales ``[K/block, N]``, zero or no zero point, ``x`` and a bias of
the scale's type.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np

from qvggt_deploy.graph.tensors import INT4, constant_dtype, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float16))


def blocked_int4_dq(dq):
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
        match = blocked_int4_dq(w.inputs[0] if w.inputs else None)
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
