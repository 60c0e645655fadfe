"""``loop-dense-heads``: run the two DPT heads one frame at a time, in an ONNX ``Loop``.

The dense heads work at full resolution (VGGT-1B at 518x518: ``[S, 128, 518, 518]`` fp32 maps,
275 MB per tensor at S = 2) and treat frames independently, so their activation memory grows with
the frame count for nothing. The official model bounds it with a Python loop over frame chunks;
on ONNX Runtime this pass does the same with a Loop whose trip count is the run-time frame count:
peak activation memory is one frame's, whatever S.

The ``qvggt.DenseHeads(t0, t1, t2, t3, images)`` marker (taps ``[1, S, N, 2C]``, images
``[1, S, 3, H, W]``) is replaced by ``Loop(S)``; iteration ``i`` gathers frame ``i`` of every
input (outer-scope tensors) into ``body``, the separately traced one-frame heads graph, and the
Loop's scan outputs ``[S, 1, 1, H, W, c]`` are reshaped to the marker's outputs
``[1, S, H, W(, c)]``. Each frame computes exactly what the batched heads compute for it.
"""
from __future__ import annotations

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.markers import DENSE_MARKER, MARKER_DOMAIN
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

SCOPE = "dense_heads"  # prefix of every name the pass creates or moves into the Loop body


@register_pass("loop-dense-heads")
def loop_dense_heads(graph, *, body):
    """Replace the dense-heads marker by a per-frame Loop over ``body``.

    Preconditions: one ``qvggt.DenseHeads`` marker; ``body`` (gs.Graph) has inputs named
    ``tap_0`` .. ``tap_3`` (``[1, 1, N, 2C]``) and, if it reads pixel values, ``image``
    (``[1, 1, 3, H, W]``; the traced heads only use its shape, so it is usually absent), and 4
    outputs ``[1, 1, H, W(, c)]`` in the marker's order; it is not used elsewhere (it becomes the
    Loop's body). Never touched: the rest of the graph.

    Args:
        graph (gs.Graph): modified in place.
        body (gs.Graph): the one-frame heads graph.
    """
    markers = [n for n in graph.nodes if n.op == DENSE_MARKER and n.domain == MARKER_DOMAIN]
    if len(markers) != 1:
        raise QvggtError(f"loop-dense-heads: expected one {DENSE_MARKER} marker, found {len(markers)}")
    marker = markers[0]
    slots = {f"tap_{k}": k for k in range(4)} | {"image": 4}
    unknown = [t.name for t in body.inputs if t.name not in slots]
    if unknown or len(body.outputs) != 4:
        raise QvggtError(f"loop-dense-heads: the body needs inputs among {sorted(slots)} (got unexpected "
                         f"{unknown}) and 4 outputs (has {len(body.outputs)})")
    # The body was traced on its own, so its tensor and node names (``/Constant_output_0`` ...)
    # repeat the main graph's with other values: a scope prefix keeps them apart (ORT resolves
    # the inner name first, but graph tools that flatten names would mix them up).
    for tensor in body.tensors().values():
        if not tensor.name.startswith(f"{SCOPE}/"):
            tensor.name = f"{SCOPE}/{tensor.name}"
    for node in body.nodes:
        node.name = f"{SCOPE}/{node.name}" if node.name else node.name
    slot_of = {t.name: slots[t.name[len(SCOPE) + 1:]] for t in body.inputs}
    outer, results = list(marker.inputs), list(marker.outputs)
    marker.inputs.clear()
    marker.outputs.clear()
    graph.nodes.remove(marker)

    # Body: iteration number and condition in, condition and the 4 per-frame outputs out.
    it = gs.Variable("dense_heads/iteration", dtype=np.int64, shape=[])
    cond_in = gs.Variable("dense_heads/cond_in", dtype=np.bool_, shape=[])
    cond_out = gs.Variable("dense_heads/cond_out", dtype=np.bool_, shape=[])
    index = gs.Variable("dense_heads/frame_index", dtype=np.int64, shape=[1])
    new = [gs.Node("Unsqueeze", name="dense_heads/Unsqueeze_iteration",
                   inputs=[it, gs.Constant("dense_heads/axis0", np.array([0], np.int64))], outputs=[index]),
           gs.Node("Identity", name="dense_heads/Identity_cond", inputs=[cond_in], outputs=[cond_out])]
    for dst in list(body.inputs):
        k = slot_of[dst.name]
        src = outer[k]
        frame = gs.Variable(f"dense_heads/frame_{k}", dtype=dst.dtype, shape=dst.shape)
        new.append(gs.Node("Gather", name=f"dense_heads/Gather_{k}", inputs=[src, index], outputs=[frame],
                           attrs={"axis": 1}))
        for consumer in list(dst.outputs):
            for j, t in enumerate(consumer.inputs):
                if t is dst:
                    consumer.inputs[j] = frame
    body.nodes.extend(new)
    body.inputs = [it, cond_in]
    body.outputs = [cond_out, *body.outputs]
    body.name = "dense_heads_frame"

    # Outer graph: trip count = frames, then [S, 1, 1, H, W(, c)] -> [1, S, H, W(, c)].
    images = outer[4]
    shape = gs.Variable("dense_heads/images_shape", dtype=np.int64, shape=[5])
    frames = gs.Variable("dense_heads/frames", dtype=np.int64, shape=[])
    graph.nodes.append(gs.Node("Shape", name="dense_heads/Shape", inputs=[images], outputs=[shape]))
    graph.nodes.append(gs.Node("Gather", name="dense_heads/Gather_frames",
                               inputs=[shape, gs.Constant("dense_heads/one", np.array(1, np.int64))], outputs=[frames],
                               attrs={"axis": 0}))
    scans = [gs.Variable(f"dense_heads/scan_{k}", dtype=np.float32) for k in range(4)]
    graph.nodes.append(gs.Node("Loop", name="dense_heads/Loop",
                               inputs=[frames, gs.Constant("dense_heads/true", np.array(True))],
                               outputs=scans, attrs={"body": body}))
    for k, (scan, out, frame_out) in enumerate(zip(scans, results, body.outputs[1:])):
        per_frame = list(frame_out.shape or [])
        if len(per_frame) < 4 or any(not isinstance(d, int) for d in per_frame[2:]):
            raise QvggtError(f"loop-dense-heads: body output {frame_out.name} needs a static shape, got {per_frame}")
        target = np.array([1, -1, *per_frame[2:]], np.int64)
        graph.nodes.append(gs.Node("Reshape", name=f"dense_heads/Reshape_{k}",
                                   inputs=[scan, gs.Constant(f"dense_heads/shape_{k}", target)], outputs=[out]))
    return graph.cleanup().toposort()
