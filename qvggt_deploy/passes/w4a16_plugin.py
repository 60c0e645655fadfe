"""``w4a16-plugin``: INT4 ``DequantizeLinear + MatMul (+ Add bias)`` -> the W4A16 GEMM plugin node.

For TensorRT graphs (``--target trt``): each fp16 weight-only INT4 GEMM becomes one node of the
project's TensorRT plugin. The node's op type, version and attributes come from
``qvggt_deploy.ops.plugin_contract`` (the kernel's single source of truth); the weights are in the
canonical recipe format the kernel reads: ``qweight`` uint8 ``[N, K/2]`` (low nibble = even k,
value q + 8), ``scales`` fp16 ``[N, K/group]``, optional ``bias`` fp16 ``[N]``.
"""
from __future__ import annotations

import types
from typing import Optional

import numpy as np

from qvggt_deploy.export.tensors import TensorStore, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.int4_to_matmulnbits import _blocked_int4_dq
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

# Used only until qvggt_deploy/ops/plugin_contract.py exists (issue text of the kernel contract).
_FALLBACK_CONTRACT = types.SimpleNamespace(
    OP_TYPE="QvggtW4A16Gemm", PLUGIN_VERSION="1", PLUGIN_NAMESPACE="", DOMAIN="",
    ATTRIBUTES=("group_size", "in_features", "out_features", "has_bias"),
)


def plugin_contract():
    """The plugin's ONNX contract (``ops/plugin_contract.py`` when present)."""
    try:
        from qvggt_deploy.ops import plugin_contract as contract  # type: ignore[attr-defined]
    except ImportError:
        return _FALLBACK_CONTRACT
    return contract


def canonical_weights(q_kn: np.ndarray, s_kn: np.ndarray):
    """ONNX-layout INT4 ``[K, N]`` and scales ``[K/g, N]`` -> canonical qweight uint8 ``[N, K/2]``
    and scales ``[N, K/g]``."""
    u = (q_kn.T.astype(np.int16) + 8).astype(np.uint8)
    return np.ascontiguousarray(u[:, 0::2] | (u[:, 1::2] << 4)), np.ascontiguousarray(s_kn.T)


@register_pass("w4a16-plugin")
def w4a16_plugin(graph, *, store: Optional[TensorStore] = None):
    """Replace fp16 INT4 weight-only GEMMs by the W4A16 plugin node.

    Matches ``MatMul(x, DequantizeLinear(q, s))`` with ``q`` a constant INT4 ``[K, N]`` blocked
    along K (axis 0), ``s`` fp16 ``[K/group, N]``, zero or no zero point, and ``x`` fp16 when its
    type is known; a following ``Add`` of a constant fp16 ``[N]`` becomes the plugin's bias.

    Preconditions: a ``--target trt`` graph (fp16 GEMMs behind Casts). Never touched: fp32 INT4
    GEMMs (the plugin is fp16 only), other MatMuls, INT4 ``.values``.

    Args:
        graph (gs.Graph): modified in place.
        store (TensorStore): where the repacked weights go. Defaults to in memory.
    """
    contract = plugin_contract()
    store = store or TensorStore()
    cache = {}
    count = 0
    for mm in [n for n in graph.nodes if n.op == "MatMul"]:
        x, w = mm.inputs
        match = _blocked_int4_dq(w.inputs[0] if w.inputs else None)
        if match is None:
            continue
        q, s, group = match
        if np.dtype(s.dtype) != np.float16 or (x.dtype is not None and np.dtype(x.dtype) != np.float16):
            continue
        K, N = q.shape
        if q.name not in cache:
            qw, sc = canonical_weights(read_array(q), read_array(s))
            cache[q.name] = (store.add(f"{q.name}.w4a16", qw), store.add(f"{s.name}.w4a16", sc.astype(np.float16)))
        inputs = [x, *cache[q.name]]
        out, tail = mm.outputs[0], [mm]
        consumers = out.outputs
        if len(consumers) == 1 and consumers[0].op == "Add" and out not in graph.outputs:
            add = consumers[0]
            other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            if isinstance(other, gs.Constant) and tuple(other.shape) == (N,) and np.dtype(other.dtype) == np.float16:
                inputs.append(other)
                out = add.outputs[0]
                tail.append(add)
        attrs = {"group_size": int(group), "in_features": int(K), "out_features": int(N),
                 "has_bias": int(len(inputs) == 4), "plugin_version": str(contract.PLUGIN_VERSION)}
        if getattr(contract, "PLUGIN_NAMESPACE", ""):
            attrs["plugin_namespace"] = contract.PLUGIN_NAMESPACE
        for node in tail:
            node.outputs.clear()
            node.inputs.clear()
        name = (mm.name or f"w4a16_{count}").rsplit("/", 1)[0] + f"/{contract.OP_TYPE}"
        graph.nodes.append(gs.Node(contract.OP_TYPE, name=name, domain=getattr(contract, "DOMAIN", "") or None,
                                   inputs=inputs, outputs=[out], attrs=attrs))
        count += 1
    logger.debug("w4a16-plugin: %d GEMMs rewritten", count)
    return graph.cleanup().toposort()
