"""``drop-filtered-tokens``: the calibration-graph variant of QVGGT's token rule (``docs/method.md``).

For a calibrator that collects activation ranges on the ONNX graph: at the input ``X [B', T, K]``
of each listed quantized layer, what the calibrator must observe is, per frame, the 5 special
rows dropped and the R rows of ``comp.<layer>`` (``[R, K]``) inserted::

    observed = concat(X[:, t where t % N_f >= 5], tile(comp.<layer>, frames))     # [B', T', K]

with ``N_f`` = tokens per frame and ``frames = T / N_f`` (1 in frame attention, S in global
attention). The pass adds that tensor as an extra graph output ``<layer>.calib_input``; the layer
itself still computes on the original X, so every model output is unchanged. (The deployed
variant, where special tokens bypass the activation quantizers, is ``bypass-special-tokens``.)
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")

SUFFIX = ".calib_input"


def layer_input(graph, layer: str):
    """The activation tensor entering layer ``layer``: the non-constant input of the layer's
    first-call nodes (named ``<layer>/...``) that no node of the layer produces."""
    prefix = f"{layer}/"
    nodes = [n for n in graph.nodes if (n.name or "").startswith(prefix) and "/call" not in n.name[len(prefix):]]
    produced = {t.name for n in nodes for t in n.outputs}
    inputs = []
    for n in nodes:
        for t in n.inputs:
            if isinstance(t, gs.Variable) and t.name and t.name not in produced and t not in inputs:
                inputs.append(t)
    if len(inputs) != 1:
        raise QvggtError(f"drop-filtered-tokens: layer {layer} has {len(inputs)} activation inputs in the graph "
                         f"(nodes named '{prefix}...'), expected 1")
    return inputs[0]


@register_pass("drop-filtered-tokens")
def drop_filtered_tokens(graph, *, compensation: Mapping[str, np.ndarray], tokens_per_frame: int,
                         num_special: int = 5):
    """Expose, per listed layer, its calibration input (special rows of each frame replaced by the
    layer's compensation rows) as the graph output ``<layer>.calib_input``.

    Preconditions: the layers' nodes are named ``<layer>/...`` (as the exporter names them), each
    layer's input is fp32 ``[B', T, K]`` with ``T`` a multiple of ``tokens_per_frame`` (export the
    calibration graph with ``--target ort``). Never touched:
    the existing nodes and outputs (the model computes exactly what it computed before).

    Args:
        graph (gs.Graph): modified in place.
        compensation (mapping): layer name -> ``comp.<layer>`` rows, float ``[R, K]`` (R may be 0).
        tokens_per_frame (int): ``N_f`` = 5 + patches per frame.
        num_special (int): special tokens per frame. Defaults to 5.

    Raises:
        QvggtError: a layer not found, a bad row shape, or a bad token layout.
    """
    if tokens_per_frame <= num_special or num_special < 0:
        raise QvggtError(f"drop-filtered-tokens: tokens_per_frame {tokens_per_frame} must exceed num_special {num_special}")
    for layer, rows in compensation.items():
        rows = np.asarray(rows, dtype=np.float32)
        x = layer_input(graph, layer)
        K = x.shape[-1] if x.shape else None
        if rows.ndim != 2 or (isinstance(K, int) and rows.shape[1] != K):
            raise QvggtError(f"drop-filtered-tokens: comp.{layer} has shape {list(rows.shape)}, expected [R, {K}]")
        K = rows.shape[1]
        prefix = f"{layer}/calibration"
        new = []

        def op(name, inputs, dtype=np.float32, attrs=None, out=None):
            out = out or gs.Variable(f"{prefix}/{name}_output", dtype=dtype)
            new.append(gs.Node(name.split("_")[0], name=f"{prefix}/{name}", inputs=inputs, outputs=[out], attrs=attrs or {}))
            return out

        c = lambda name, v: gs.Constant(f"{prefix}/{name}", np.asarray(v))  # noqa: E731
        per_frame = op("Reshape_frames", [x, c("frames_shape", np.array([0, -1, tokens_per_frame, K], np.int64))])
        kept = op("Slice_patches", [per_frame, c("start", np.array([num_special], np.int64)),
                                    c("end", np.array([tokens_per_frame], np.int64)), c("axis", np.array([2], np.int64))])
        parts = [op("Reshape_patches", [kept, c("rows_shape", np.array([0, -1, K], np.int64))])]
        if rows.shape[0]:
            lead = op("Slice_lead", [op("Shape", [per_frame], np.int64), c("zero", np.array([0], np.int64)),
                                     c("two", np.array([2], np.int64))], np.int64)
            target = op("Concat_target", [lead, c("rows_k", np.array([rows.shape[0], K], np.int64))], np.int64, {"axis": 0})
            comp = gs.Constant(f"comp.{layer}", rows[None, None])
            tiled = op("Expand_comp", [comp, target])
            parts.append(op("Reshape_comp", [tiled, c("comp_shape", np.array([0, -1, K], np.int64))]))
        out = gs.Variable(f"{layer}{SUFFIX}", dtype=np.float32, shape=[x.shape[0] if x.shape else None, None, K])
        op("Concat_observed", parts, attrs={"axis": 1}, out=out)
        graph.nodes.extend(new)
        graph.outputs.append(out)
    return graph.cleanup().toposort()
