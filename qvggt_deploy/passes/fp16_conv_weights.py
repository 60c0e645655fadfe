"""``fp16-conv-weights``: store convolution weights in fp16, computed in fp32.

The DPT heads' convolutions are a third of VGGT-1B's W4A16 file when kept in fp32 (261 MB). With
the plan's ``conv_precision = fp16`` the exporter rounds those weights to fp16 in the model (the
PyTorch reference does the same: :func:`qvggt_deploy.export.convs.round_conv_weights`), and this
pass stores them as fp16 initializers followed by ``Cast(to=float)``: the convolution still runs in
fp32 on the same values, so the graph stays exact, and the file and download are halved for them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")


@register_pass("fp16-conv-weights")
def fp16_conv_weights(graph, *, prefixes: Sequence[str] = ("model.depth_head.", "model.point_head."),
                      store=None):
    """Replace the fp32 weight of every Conv/ConvTranspose whose weight name starts with one of
    ``prefixes`` by an fp16 constant and a Cast to fp32.

    Preconditions: those weights are exactly representable in fp16 (round them in the model
    first). Never touched: biases, other convolutions, anything else.

    Args:
        graph (gs.Graph): modified in place.
        prefixes (sequence of str): weight-name prefixes. Defaults to the two DPT heads.
        store (TensorStore): where the fp16 bytes go. Defaults to in memory.

    Raises:
        QvggtError: a weight that fp16 would change (names the node).
    """
    from qvggt_deploy.graph.tensors import TensorStore, read_array

    store = store or TensorStore()
    done = {}
    for node in [n for n in graph.nodes if n.op in ("Conv", "ConvTranspose")]:
        w = node.inputs[1]
        if not isinstance(w, gs.Constant) or not w.name.startswith(tuple(prefixes)):
            continue
        if w.name not in done:
            values = read_array(w)
            if values.dtype != np.float32:
                continue
            half = values.astype(np.float16)
            if not np.array_equal(half.astype(np.float32), values):
                raise QvggtError(f"node {node.name}: weight {w.name} is not fp16-representable; round the "
                                 f"model's conv weights first (conv precision fp16)")
            cast_out = gs.Variable(f"{w.name}_fp32", dtype=np.float32, shape=list(values.shape))
            graph.nodes.append(gs.Node("Cast", name=f"{w.name}/Cast", inputs=[store.add(f"{w.name}_fp16", half)],
                                       outputs=[cast_out], attrs={"to": 1}))
            done[w.name] = cast_out
        node.inputs[1] = done[w.name]
    return graph.cleanup().toposort()
