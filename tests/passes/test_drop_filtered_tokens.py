import numpy as np
import onnx_graphsurgeon as gs
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass
from qvggt_deploy.quant.fake import special_token_mask
from tests.onnx_util import ort_run

NF, K = 7, 4  # tokens per frame, channels


def layer_graph():
    """One 'layer' (nodes named fc/...) reading x [B', T, K]."""
    x = gs.Variable("x", dtype=np.float32, shape=["b", "t", K])
    w = gs.Constant("fc.weight", np.eye(K, dtype=np.float32))
    y = gs.Variable("y", dtype=np.float32, shape=["b", "t", K])
    return gs.Graph(nodes=[gs.Node("MatMul", name="fc/MatMul", inputs=[x, w], outputs=[y])], inputs=[x], outputs=[y], opset=21)


@pytest.mark.parametrize("batch,frames", [(2, 1), (1, 3)])  # frame attention, global attention
@pytest.mark.parametrize("rows", [5, 0])
def test_calibration_input_drops_special_rows_and_inserts_compensation(batch, frames, rows):
    comp = np.random.default_rng(0).standard_normal((rows, K)).astype(np.float32)
    graph = layer_graph()
    get_pass("drop-filtered-tokens")(graph, compensation={"fc": comp}, tokens_per_frame=NF)
    assert [t.name for t in graph.outputs] == ["y", "fc.calib_input"]
    x = np.random.default_rng(1).standard_normal((batch, frames * NF, K)).astype(np.float32)
    y, observed = ort_run(graph, {"x": x})
    np.testing.assert_array_equal(y, x)  # the layer still computes on the original input
    keep = ~special_token_mask(frames * NF, NF, 5).numpy()
    expected = np.concatenate([x[:, keep], np.broadcast_to(comp, (batch, frames, rows, K)).reshape(batch, -1, K)], axis=1)
    np.testing.assert_array_equal(observed, expected)


def test_bad_inputs():
    with pytest.raises(QvggtError, match="activation inputs"):
        get_pass("drop-filtered-tokens")(layer_graph(), compensation={"other": np.zeros((5, K))}, tokens_per_frame=NF)
    with pytest.raises(QvggtError, match=r"expected \[R, 4\]"):
        get_pass("drop-filtered-tokens")(layer_graph(), compensation={"fc": np.zeros((5, K + 1))}, tokens_per_frame=NF)
    with pytest.raises(QvggtError, match="must exceed"):
        get_pass("drop-filtered-tokens")(layer_graph(), compensation={}, tokens_per_frame=5)
