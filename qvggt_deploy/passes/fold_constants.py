"""``fold-constants``: evaluate what is constant, including the static parts of shape arithmetic.

The TorchScript exporter leaves shape computations (``Shape -> Gather -> Concat -> Reshape``) that
only depend on the fixed H, W. One round of folding exposes more static shapes, so this pass
alternates ONNX shape inference (with data propagation) and onnx-graphsurgeon's
``fold_constants(fold_shapes=True)`` until the node count stops falling.
"""
from __future__ import annotations

from typing import Sequence

from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.registry import register_pass

gs = lazy_import("onnx_graphsurgeon")
onnx = lazy_import("onnx")

logger = get_logger(__name__)


def _weightless(model, min_bytes: int = 4096):
    """``model`` with every initializer of at least ``min_bytes`` turned into a typed graph input:
    shape inference needs their types, not their bytes (VGGT-1B's 0.3 GB would be serialised
    on each round otherwise). Small constants stay: data propagation reads them."""
    keep = []
    for init in model.graph.initializer:
        if init.ByteSize() >= min_bytes:
            model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            keep.append(init)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def infer_shapes_in_place(graph) -> None:
    """Give every variable tensor the dtype and shape ONNX shape inference finds (with data
    propagation), keeping what is already known. Graph outputs keep their declared shapes."""
    model = _weightless(gs.export_onnx(graph, do_type_check=False))
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    infos = {vi.name: vi for vi in model.graph.value_info}
    outputs = {t.name for t in graph.outputs}
    for name, tensor in graph.tensors().items():
        vi = infos.get(name)
        if vi is None or isinstance(tensor, gs.Constant) or name in outputs:
            continue
        tt = vi.type.tensor_type
        if tensor.dtype is None and tt.elem_type:
            tensor.dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if tt.HasField("shape"):
            tensor.shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


@register_pass("fold-constants")
def fold_constants(graph, *, max_rounds: int = 8, size_threshold: int = 16 << 20,
                   exclude_ops: Sequence[str] = ("DequantizeLinear", "QuantizeLinear")):
    """Fold constant subgraphs and static shape arithmetic, repeatedly.

    Preconditions: ONNX Runtime installed (it evaluates the constant subgraphs); the graph is
    valid ONNX apart from custom-domain nodes, which are never evaluated. Never touched: nodes
    with an op in ``exclude_ops`` (folding ``DequantizeLinear`` would turn INT4 weights into
    fp32 ones), graph inputs and outputs; no constant larger than ``size_threshold`` bytes is
    produced.

    Args:
        graph (gs.Graph): modified in place.
        max_rounds (int): at most this many inference + fold rounds. Defaults to 8.
        size_threshold (int): largest folded tensor, bytes. Defaults to 16 MiB.
        exclude_ops (sequence of str): ops never folded. Defaults to Q/DQ.
    """
    excluded = set(exclude_ops)
    lazy_import("onnxruntime").set_default_logger_severity(3)  # its optimizer's warnings are noise here
    for round_ in range(max_rounds):
        before = len(graph.nodes)
        infer_shapes_in_place(graph)
        graph.fold_constants(fold_shapes=True, size_threshold=size_threshold,
                             should_exclude_node=lambda node: node.op in excluded)
        graph.cleanup().toposort()
        logger.debug("fold-constants round %d: %d -> %d nodes", round_ + 1, before, len(graph.nodes))
        if len(graph.nodes) >= before:
            break
    return graph.cleanup().toposort()
