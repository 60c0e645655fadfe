"""The pass registry: named onnx-graphsurgeon rewrites.

A pass is ``f(graph, *, ...) -> graph``: it rewrites ``graph`` (an ``onnx_graphsurgeon.Graph``) in
place, ends with ``graph.cleanup().toposort()`` and returns it. Options are keyword-only with
documented defaults. Register one with ``@register_pass("name")``; the exporter records the names
of the passes it ran in the model's metadata (``qvggt.passes``).

We keep our own registry instead of ``gs.Graph.register`` (global class state shared with any
other user of onnx-graphsurgeon in the process).
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Optional, Tuple

from qvggt_deploy.errors import QvggtError

_PASSES: Dict[str, Callable] = {}

# Pass modules, imported on first lookup so that every registered name is known.
_MODULES = (
    "qvggt_deploy.passes.cleanup",
    "qvggt_deploy.passes.fold_constants",
    "qvggt_deploy.passes.lower_attention",
    "qvggt_deploy.passes.loop_dense_heads",
    "qvggt_deploy.passes.band_upsampled_convs",
    "qvggt_deploy.passes.dedupe_constants",
    "qvggt_deploy.passes.fp16_conv_weights",
    "qvggt_deploy.passes.bypass_special_tokens",
    "qvggt_deploy.passes.drop_filtered_tokens",
    "qvggt_deploy.passes.int4_to_matmulnbits",
    "qvggt_deploy.passes.int4_to_qgemm",
    "qvggt_deploy.passes.w4a16_plugin",
    "qvggt_deploy.passes.lower_linears",
)


def register_pass(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``f`` as pass ``name`` (a name can be registered once)."""

    def wrap(fn: Callable) -> Callable:
        if name in _PASSES and _PASSES[name] is not fn:
            raise ValueError(f"pass {name!r} is already registered by {_PASSES[name].__module__}")
        _PASSES[name] = fn
        fn.pass_name = name
        return fn

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def get_pass(name: str) -> Callable:
    """The pass registered as ``name``."""
    _load_all()
    if name not in _PASSES:
        raise QvggtError(f"unknown graph pass {name!r}; known: {', '.join(sorted(_PASSES))}")
    return _PASSES[name]


def list_passes() -> List[str]:
    _load_all()
    return sorted(_PASSES)


class PassRunner:
    """Runs passes by name on one graph and remembers what ran (for the metadata).

    Args:
        graph (gs.Graph): the graph.
        on_pass (callable, optional): called with each pass name after it ran (timing, logging).
    """

    def __init__(self, graph, on_pass: Optional[Callable[[str], None]] = None):
        self.graph = graph
        self.on_pass = on_pass
        self.applied: List[Tuple[str, Dict]] = []

    def run(self, name: str, **kwargs):
        self.graph = get_pass(name)(self.graph, **kwargs)
        self.applied.append((name, kwargs))
        if self.on_pass is not None:
            self.on_pass(name)
        return self.graph

    @property
    def names(self) -> List[str]:
        return [name for name, _ in self.applied]
