"""``w4a16-plugin``: INT4 ``DequantizeLinear + MatMul (+ Add bias)`` -> the W4A16 GEMM plugin node.

For TensorRT graphs (``--target trt --trt-plugin``): each fp16 weight-only INT4 GEMM becomes one
node of the project's TensorRT plugin. Op type, domain, attributes, input order and the weights'
device layout are the kernel's contract (:mod:`qvggt_deploy.ops.plugin_contract`); the node and
its constants come from its :func:`~qvggt_deploy.ops.plugin_contract.make_plugin_node`, fed with
the canonical INT4 weights recovered from the graph's INT4 constant. GEMMs the kernel cannot run
(its shape rules: K % 64, N % 16, group % 32) stay DequantizeLinear + MatMul.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from qvggt_deploy.export.tensors import TensorStore, canonical_from_onnx_int4, int4_raw, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.int4_to_matmulnbits import _blocked_int4_dq
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)


@register_pass("w4a16-plugin")
def w4a16_plugin(graph, *, store: Optional[TensorStore] = None):
    """Replace fp16 INT4 weight-only GEMMs by the W4A16 plugin node.

    Matches ``MatMul(x, DequantizeLinear(q, s))`` with ``q`` a constant INT4 ``[K, N]`` blocked
    along K (axis 0), ``s`` fp16 ``[K/group, N]``, zero or no zero point, and ``x`` fp16 when its
    type is known; a following ``Add`` of a constant ``[N]`` becomes the plugin's bias.

    Preconditions: a ``--target trt`` graph (fp16 GEMMs behind Casts). Never touched: fp32 INT4
    GEMMs (the plugin is fp16 only), shapes the kernel refuses, other MatMuls, INT4 ``.values``.

    Args:
        graph (gs.Graph): modified in place.
        store (TensorStore): where the repacked weights go. Defaults to in memory.
    """
    from qvggt_deploy.ops import plugin_contract as contract
    from qvggt_deploy.ops.layout import kernel_shape_error

    store = store or TensorStore()
    cache = {}
    count = skipped = 0
    for mm in [n for n in graph.nodes if n.op == "MatMul"]:
        x, w = mm.inputs
        match = _blocked_int4_dq(w.inputs[0] if w.inputs else None)
        if match is None:
            continue
        q, s, group = match
        if np.dtype(s.dtype) != np.float16 or (x.dtype is not None and np.dtype(x.dtype) != np.float16):
            continue
        K, N = q.shape
        reason = kernel_shape_error(N, K, group)
        if reason is not None:
            logger.debug("w4a16-plugin: %s stays DequantizeLinear + MatMul (%s)", mm.name, reason)
            skipped += 1
            continue
        out, tail = mm.outputs[0], [mm]
        bias = None
        consumers = out.outputs
        if len(consumers) == 1 and consumers[0].op == "Add" and out not in graph.outputs:
            add = consumers[0]
            other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            if isinstance(other, gs.Constant) and tuple(other.shape) == (N,):
                bias, out = other, add.outputs[0]
                tail.append(add)
        layer = (mm.name or f"w4a16_{count}").rsplit("/", 1)[0]
        key = (q.name, bias.name if bias is not None else None)
        if key not in cache:
            qweight = canonical_from_onnx_int4(int4_raw(q), K, N)
            scales = np.array(read_array(s).T, order="C")
            spec = contract.make_plugin_node(q.name.rsplit(".", 1)[0], "x", "y", qweight, scales, group,
                                             None if bias is None else np.array(read_array(bias)))
            consts = [store.add(name, value) for name, value in spec.constants.items()]
            cache[key] = (spec, consts)
        spec, consts = cache[key]
        for node in tail:
            node.outputs.clear()
            node.inputs.clear()
        graph.nodes.append(gs.Node(spec.op_type, name=f"{layer}/{spec.op_type}", domain=spec.domain,
                                   inputs=[x, *consts], outputs=[out], attrs=dict(spec.attrs)))
        count += 1
    logger.debug("w4a16-plugin: %d GEMMs rewritten, %d left to TensorRT", count, skipped)
    return graph.cleanup().toposort()
