import numpy as np
import onnx_graphsurgeon as gs

from qvggt_deploy.passes import get_pass
from tests.onnx_util import ort_run


def test_identical_constants_merge_and_results_hold():
    x = gs.Variable("x", dtype=np.float32, shape=[4, 16])
    table = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    a, b = gs.Constant("a", table.copy()), gs.Constant("b", table.copy())
    c = gs.Constant("c", table + 1)
    ya, yb, yc = (gs.Variable(n, dtype=np.float32, shape=[4, 16]) for n in ("ya", "yb", "yc"))
    nodes = [gs.Node("Mul", inputs=[x, a], outputs=[ya]), gs.Node("Mul", inputs=[x, b], outputs=[yb]),
             gs.Node("Mul", inputs=[x, c], outputs=[yc])]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[ya, yb, yc], opset=21)
    feed = {"x": np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)}
    before = ort_run(graph, feed)
    get_pass("dedupe-constants")(graph)
    consts = {t.name for n in graph.nodes for t in n.inputs if isinstance(t, gs.Constant)}
    assert consts == {"a", "c"}
    for u, v in zip(before, ort_run(graph, feed)):
        np.testing.assert_array_equal(u, v)
