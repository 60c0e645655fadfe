"""``bypass-special-tokens``: special tokens skip the activation quantizers.

QVGGT keeps each frame's special tokens (camera + registers in the aggregator, CLS + registers in
the DINOv2 blocks: 5 per frame) in float: token ``i`` of a ``[..., L, C]`` activation is special iff
``i % tokens_per_frame < num_special`` — the rule of ``quant/fake.py``'s ``special_token_mask``,
which holds for frame attention (``L = N``) and global attention (``L = S*N``) alike.

For each activation quantizer ``x -> QuantizeLinear -> DequantizeLinear -> xq`` selected, the pass
inserts ``Where(mask, x, xq)`` with the mask built from ``Shape(x)`` at run time, so the frame
count stays dynamic::

    L    = Gather(Shape(x), -2)
    mask = Unsqueeze(Less(Mod(Range(0, L, 1), tokens_per_frame), num_special), -1)   # [L, 1]
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")


def activation_quantizers(graph, layers: Optional[Iterable[str]] = None):
    """``(Q, DQ)`` node pairs that fake-quantize a run-time tensor (not a weight).

    With ``layers``, only quantizers whose Q node name starts with ``<layer>/``.
    """
    prefixes = tuple(f"{l}/" for l in layers) if layers is not None else None
    pairs = []
    for q in graph.nodes:
        if q.op != "QuantizeLinear" or isinstance(q.inputs[0], gs.Constant):
            continue
        if prefixes is not None and not (q.name or "").startswith(prefixes):
            continue
        for dq in list(q.outputs[0].outputs):
            if dq.op == "DequantizeLinear":
                pairs.append((q, dq))
    return pairs


@register_pass("bypass-special-tokens")
def bypass_special_tokens(graph, *, tokens_per_frame: int, num_special: int = 5,
                          layers: Optional[Iterable[str]] = None):
    """Route special tokens around the selected activation quantizers.

    Preconditions: each selected quantizer's input has rank >= 2 with tokens on axis -2.
    Never touched: weight quantizers (Q/DQ on constants), the quantizers themselves, other nodes.

    Args:
        graph (gs.Graph): modified in place.
        tokens_per_frame (int): tokens of one frame (5 + patches), fixed by H, W.
        num_special (int): leading special tokens per frame. Defaults to 5.
        layers (iterable of str, optional): only these layers' quantizers (node names start with
            ``<layer>/``). Defaults to every activation quantizer.

    Raises:
        QvggtError: bad ``tokens_per_frame``/``num_special``.
    """
    if tokens_per_frame <= 0 or not 0 < num_special <= tokens_per_frame:
        raise QvggtError(f"bypass-special-tokens: need 0 < num_special ({num_special}) <= "
                         f"tokens_per_frame ({tokens_per_frame})")
    consts = {}

    def const(name, value):
        if name not in consts:
            consts[name] = gs.Constant(f"qvggt.special_mask.{name}", np.array(value))
        return consts[name]

    for i, (q, dq) in enumerate(activation_quantizers(graph, layers)):
        x, xq = q.inputs[0], dq.outputs[0]
        if any(t is xq for t in graph.outputs):
            raise QvggtError(f"bypass-special-tokens: quantizer {dq.name} feeds a graph output")
        prefix = (q.name or f"act_quant_{i}").rsplit("/", 1)[0] + "/special_bypass"

        def node(op, inputs, dtype, attrs=None, suffix=""):
            out = gs.Variable(f"{prefix}/{op}{suffix}_output", dtype=dtype)
            graph.nodes.append(gs.Node(op, name=f"{prefix}/{op}{suffix}", inputs=inputs, outputs=[out], attrs=attrs or {}))
            return out

        shape = node("Shape", [x], np.int64)
        length = node("Gather", [shape, const("axis", np.int64(-2))], np.int64, {"axis": 0})
        idx = node("Range", [const("zero", np.int64(0)), length, const("one", np.int64(1))], np.int64)
        pos = node("Mod", [idx, const("tokens_per_frame", np.int64(tokens_per_frame))], np.int64)
        special = node("Less", [pos, const("num_special", np.int64(num_special))], np.bool_)
        mask = node("Unsqueeze", [special, const("last_axis", np.array([-1], np.int64))], np.bool_)
        consumers = list(xq.outputs)
        out = node("Where", [mask, x, xq], xq.dtype)
        for consumer in consumers:
            for j, t in enumerate(consumer.inputs):
                if t is xq:
                    consumer.inputs[j] = out
    return graph.cleanup().toposort()
