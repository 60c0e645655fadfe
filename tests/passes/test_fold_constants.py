import numpy as np
import onnx_graphsurgeon as gs

from qvggt_deploy.passes import get_pass
from tests.onnx_util import int4_matmul_graph, ort_run


def reshape_by_shape_graph():
    """y = Reshape(x, concat(Shape(x)[0], 12)): the static half only folds after shape inference."""
    x = gs.Variable("x", dtype=np.float32, shape=["n", 3, 4])
    shape = gs.Variable("shape", dtype=np.int64)
    first = gs.Variable("first", dtype=np.int64)
    rest = gs.Variable("rest", dtype=np.int64)
    prod = gs.Variable("prod", dtype=np.int64)
    target = gs.Variable("target", dtype=np.int64)
    y = gs.Variable("y", dtype=np.float32, shape=["n", 12])
    idx0 = gs.Constant("idx0", np.array([0], np.int64))
    nodes = [
        gs.Node("Shape", inputs=[x], outputs=[shape]),
        gs.Node("Gather", inputs=[shape, idx0], outputs=[first], attrs={"axis": 0}),
        gs.Node("Slice", inputs=[shape, gs.Constant("b", np.array([1], np.int64)), gs.Constant("e", np.array([3], np.int64))], outputs=[rest]),
        gs.Node("ReduceProd", inputs=[rest], outputs=[prod], attrs={"keepdims": 1}),
        gs.Node("Concat", inputs=[first, prod], outputs=[target], attrs={"axis": 0}),
        gs.Node("Reshape", inputs=[x, target], outputs=[y]),
    ]
    return gs.Graph(nodes=nodes, inputs=[x], outputs=[y], opset=21)


def test_static_shape_arithmetic_folds_and_results_hold():
    graph = reshape_by_shape_graph()
    x = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    (before,) = ort_run(graph, {"x": x})
    get_pass("fold-constants")(graph)
    assert "ReduceProd" not in [n.op for n in graph.nodes] and "Slice" not in [n.op for n in graph.nodes]
    (after,) = ort_run(graph, {"x": x})
    np.testing.assert_array_equal(before, after)


def test_int4_dequantize_is_never_folded():
    graph, _, _ = int4_matmul_graph(64, 16, 32)
    get_pass("fold-constants")(graph)
    assert "DequantizeLinear" in [n.op for n in graph.nodes]
