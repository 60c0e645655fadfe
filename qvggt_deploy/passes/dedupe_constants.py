"""``dedupe-constants``: one initializer per distinct constant value.

The TorchScript exporter's constant folding gives every use of a shared buffer its own folded
copy (VGGT-1B: the RoPE tables once per aggregator block, 68 MB in all). Constants with the same
type, shape and bytes are merged into the first one.
"""
from __future__ import annotations

import hashlib

from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")
gs_tensor = lazy_import("onnx_graphsurgeon.ir.tensor")


def _key(const):
    values = const._values
    if isinstance(values, gs_tensor.LazyValues):
        proto = values.tensor
        if not proto.HasField("raw_data"):  # external or typed fields: leave alone
            return None
        return proto.data_type, tuple(proto.dims), hashlib.sha1(proto.raw_data).digest()
    arr = values
    return str(arr.dtype), tuple(arr.shape), hashlib.sha1(arr.tobytes()).digest()


@register_pass("dedupe-constants")
def dedupe_constants(graph, *, min_bytes: int = 64):
    """Point every use of a duplicate constant at one copy.

    Preconditions: none. Never touched: constants smaller than ``min_bytes``, constants stored
    outside the model (external data) or in typed fields, graph outputs, values (bytes are
    compared, never converted).

    Args:
        graph (gs.Graph): modified in place.
        min_bytes (int): smallest constant considered. Defaults to 64.
    """
    first = {}
    outputs = {t.name for t in graph.outputs}
    for node in graph.nodes:
        for i, tensor in enumerate(node.inputs):
            if not isinstance(tensor, gs.Constant) or tensor.name in outputs:
                continue
            nbytes = getattr(tensor._values, "nbytes", 0)
            if nbytes < min_bytes:
                continue
            key = _key(tensor)
            if key is None:
                continue
            keep = first.setdefault(key, tensor)
            if keep is not tensor:
                node.inputs[i] = keep
    return graph.cleanup().toposort()
