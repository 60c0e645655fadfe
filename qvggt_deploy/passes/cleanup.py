"""``cleanup``: drop dead nodes and tensors, then sort the nodes topologically."""
from __future__ import annotations

from qvggt_deploy.passes.registry import register_pass


@register_pass("cleanup")
def cleanup(graph, *, remove_unused_graph_inputs: bool = False):
    """Remove nodes and tensors that no graph output depends on; toposort.

    Preconditions: none. Never touched: graph outputs (and graph inputs unless
    ``remove_unused_graph_inputs``); constant values are never read.

    Args:
        graph (gs.Graph): modified in place.
        remove_unused_graph_inputs (bool): also drop inputs nothing reads. Defaults to False.
    """
    return graph.cleanup(remove_unused_graph_inputs=remove_unused_graph_inputs).toposort()
