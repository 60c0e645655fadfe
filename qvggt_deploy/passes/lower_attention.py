"""``lower-attention``: ``qvggt.Attention(q, k, v)`` markers -> attention ops for one target.

The marker is ``scaled_dot_product_attention(q, k, v)`` (no mask, scale ``1/sqrt(D)``) on
``[B, heads, L, D]`` tensors, with attributes ``num_heads`` and ``head_dim``.

- ``fused="ort"``: ONNX Runtime's ``com.microsoft.MultiHeadAttention`` on ``[B, L, heads*D]``
  (its fused CPU kernel never materialises the ``[B, heads, L, L]`` scores: for VGGT-1B's global
  attention at 518x518, 2 frames, that is 483 MB per block, and it is ~1.6x faster here);
- ``fused=None``: ``Softmax(MatMul(q, k^T) * scale) @ v`` in the input's type (fp32 in our graphs:
  softmax stays fp32), the pattern TensorRT fuses into its own attention kernels.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.markers import ATTENTION_MARKER, MARKER_DOMAIN
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

FUSED = (None, "ort")


@register_pass("lower-attention")
def lower_attention(graph, *, fused: Optional[str] = None):
    """Replace every attention marker by ``MultiHeadAttention`` (``fused="ort"``) or by the
    MatMul/Softmax/MatMul decomposition (``fused=None``).

    Preconditions: markers come from the export view and carry ``num_heads``/``head_dim``.
    Never touched: other nodes (the surrounding Transposes are left for the runtime to cancel).

    Args:
        graph (gs.Graph): modified in place.
        fused (str, optional): "ort" or None. Defaults to None.
    """
    if fused not in FUSED:
        raise QvggtError(f"lower-attention: fused must be one of {FUSED}, got {fused!r}")
    consts = {}

    def const(name, value):
        if name not in consts:
            consts[name] = gs.Constant(f"qvggt.attention.{name}", np.asarray(value))
        return consts[name]

    for i, node in enumerate([n for n in graph.nodes if n.op == ATTENTION_MARKER and n.domain == MARKER_DOMAIN]):
        q, k, v = node.inputs
        y = node.outputs[0]
        heads, dim = int(node.attrs.get("num_heads", 0)), int(node.attrs.get("head_dim", 0))
        if heads <= 0 or dim <= 0:
            raise QvggtError(f"node {node.name}: attention marker without num_heads/head_dim")
        prefix = (node.name or f"attention_{i}").rsplit("/", 1)[0]
        new = []

        def op(name, inputs, attrs=None, out=None, domain=None, dtype=np.float32):
            out = out if out is not None else gs.Variable(f"{prefix}/{name}_output", dtype=dtype)
            new.append(gs.Node(name.split("_")[0], name=f"{prefix}/{name}", inputs=inputs, outputs=[out],
                               attrs=attrs or {}, domain=domain))
            return out

        node.inputs.clear()
        node.outputs.clear()
        if fused == "ort":
            bsd = const(f"bsd_{heads}x{dim}", np.array([0, 0, heads * dim], np.int64))
            bsnh = const(f"bsnh_{heads}x{dim}", np.array([0, 0, heads, dim], np.int64))

            def to_bsd(t, n):
                return op(f"Reshape_{n}", [op(f"Transpose_{n}", [t], {"perm": [0, 2, 1, 3]}), bsd])

            out = op("MultiHeadAttention", [to_bsd(q, "q"), to_bsd(k, "k"), to_bsd(v, "v")],
                     {"num_heads": heads, "scale": 1.0 / math.sqrt(dim)}, domain="com.microsoft")
            op("Transpose_out", [op("Reshape_out", [out, bsnh])], {"perm": [0, 2, 1, 3]}, out=y)
        else:
            scale = const(f"scale_{dim}", np.array(1.0 / math.sqrt(dim), np.float32))
            scores = op("MatMul_qk", [q, op("Transpose_k", [k], {"perm": [0, 1, 3, 2]})])
            probs = op("Softmax", [op("Mul_scale", [scores, scale])], {"axis": -1})
            op("MatMul_v", [probs, v], out=y)
        graph.nodes.extend(new)
    return graph.cleanup().toposort()
