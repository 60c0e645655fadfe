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

from qvggt_deploy.graph.int4 import detach, int4_weight_matmuls
from qvggt_deploy.graph.tensors import TensorStore, canonical_from_onnx_int4, int4_raw, read_array
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)


@register_pass("w4a16-plugin")
def w4a16_plugin(graph, *, store: Optional[TensorStore] = None):
    """Replace fp16 INT4 weight-only GEMMs by the W4A16 plugin node.

    Takes the INT4 GEMMs of :func:`qvggt_deploy.graph.int4.int4_weight_matmuls` whose scales are
    fp16 (so ``x`` and the bias are fp16 too); a following bias ``Add`` becomes the plugin's bias.

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
    for m in int4_weight_matmuls(graph):
        if np.dtype(m.s.dtype) != np.float16:  # the plugin is fp16 only (x and bias match s)
            continue
        q, s, group, bias = m.q, m.s, m.block, m.bias
        K, N = q.shape
        reason = kernel_shape_error(N, K, group)
        if reason is not None:
            logger.debug("w4a16-plugin: %s stays DequantizeLinear + MatMul (%s)", m.name, reason)
            skipped += 1
            continue
        key = (q.name, bias.name if bias is not None else None)
        if key not in cache:
            qweight = canonical_from_onnx_int4(int4_raw(q), K, N)
            scales = np.array(read_array(s).T, order="C")
            spec = contract.make_plugin_node(q.name.rsplit(".", 1)[0], "x", "y", qweight, scales, group,
                                             None if bias is None else np.array(read_array(bias)))
            consts = [store.add(name, value) for name, value in spec.constants.items()]
            cache[key] = (spec, consts)
        spec, consts = cache[key]
        detach(m.tail)
        graph.nodes.append(gs.Node(spec.op_type, name=f"{m.name}/{spec.op_type}", domain=spec.domain,
                                   inputs=[m.x, *consts], outputs=[m.out], attrs=dict(spec.attrs)))
        count += 1
    logger.debug("w4a16-plugin: %d GEMMs rewritten, %d left to TensorRT", count, skipped)
    return graph.cleanup().toposort()
