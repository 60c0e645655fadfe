"""Walking ONNX protos: every (sub)graph of a model and the byte width of each tensor type."""
from __future__ import annotations

from typing import Iterable

from qvggt_deploy.lazy import import_or_raise

#: Bytes per element of ONNX TensorProto data types (INT4/UINT4 packed two per byte).
ONNX_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8,
                    16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 0.5, 22: 0.5}


def iter_graphs(graph) -> Iterable:
    """``graph`` and every subgraph (Loop/If/Scan bodies), depth first."""
    onnx = import_or_raise("onnx")
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_graphs(sub)
