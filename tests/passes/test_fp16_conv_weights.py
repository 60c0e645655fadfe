import numpy as np
import onnx_graphsurgeon as gs
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import read_array
from qvggt_deploy.passes import get_pass
from tests.onnx_util import ort_run


def conv_graph(weight):
    x = gs.Variable("x", dtype=np.float32, shape=[1, 3, 8, 8])
    y = gs.Variable("y", dtype=np.float32, shape=[1, 4, 8, 8])
    w = gs.Constant("model.depth_head.scratch.conv.weight", weight)
    other = gs.Constant("model.aggregator.conv.weight", np.ones((4, 4, 1, 1), np.float32))
    z = gs.Variable("z", dtype=np.float32, shape=[1, 4, 8, 8])
    nodes = [gs.Node("Conv", name="conv", inputs=[x, w], outputs=[y], attrs={"pads": [1, 1, 1, 1]}),
             gs.Node("Conv", name="other", inputs=[y, other], outputs=[z])]
    return gs.Graph(nodes=nodes, inputs=[x], outputs=[z], opset=21)


def test_head_conv_weights_become_fp16_and_results_hold():
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float16).astype(np.float32)
    graph = conv_graph(w)
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    (before,) = ort_run(graph, feed)
    get_pass("fp16-conv-weights")(graph)
    conv = next(n for n in graph.nodes if n.name == "conv")
    cast = conv.inputs[1].inputs[0]
    assert cast.op == "Cast" and read_array(cast.inputs[0]).dtype == np.float16
    other = next(n for n in graph.nodes if n.name == "other")
    assert isinstance(other.inputs[1], gs.Constant)  # not under a head prefix: untouched
    (after,) = ort_run(graph, feed)
    np.testing.assert_array_equal(before, after)


def test_weights_fp16_would_change_are_refused():
    w = np.full((4, 3, 3, 3), 0.1, np.float32)
    with pytest.raises(QvggtError, match="node conv: .* not fp16-representable"):
        get_pass("fp16-conv-weights")(conv_graph(w))
