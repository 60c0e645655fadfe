import numpy as np
import onnx_graphsurgeon as gs
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass
from tests.onnx_util import ort_run

C, h, w = 6, 10, 12


def tail_graph(H=37, W=41, kernel=3, stride=1, mode="linear", post=True, rows_const=True, seed=0):
    """x [S, C, h, w] -> Resize(align_corners) to [S, C, H, W] -> + row/col embeddings -> kxk Conv
    -> Relu -> 1x1 Conv: the DPT heads' tail in small."""
    rng = np.random.default_rng(seed)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    x = gs.Variable("x", dtype=np.float32, shape=["S", C, h, w])
    shape = gs.Variable("shape", dtype=np.int64)
    lead = gs.Variable("lead", dtype=np.int64)
    sizes = gs.Variable("sizes", dtype=np.int64)
    up, a1, a2, c1, r, y = (gs.Variable(n, dtype=np.float32) for n in ("up", "a1", "a2", "c1", "r", "y"))
    col = gs.Constant("col", f32(1, C, 1, W))
    row = gs.Constant("row", f32(1, C, H, 1) if rows_const else f32(1, C, 1, 1))
    nodes = [gs.Node("Shape", inputs=[x], outputs=[shape]),
             gs.Node("Slice", inputs=[shape, gs.Constant("s0", np.array([0])), gs.Constant("s2", np.array([2]))],
                     outputs=[lead]),
             gs.Node("Concat", inputs=[lead, gs.Constant("hw", np.array([H, W]))], outputs=[sizes], attrs={"axis": 0}),
             gs.Node("Resize", name="resize", inputs=[x, gs.Variable.empty(), gs.Variable.empty(), sizes], outputs=[up],
                     attrs={"mode": mode, "coordinate_transformation_mode": "align_corners"}),
             gs.Node("Add", inputs=[up, col], outputs=[a1]),
             gs.Node("Add", inputs=[a1, row], outputs=[a2]),
             gs.Node("Conv", name="conv", inputs=[a2, gs.Constant("w1", f32(4, C, kernel, kernel)), gs.Constant("b1", f32(4))],
                     outputs=[c1], attrs={"pads": [kernel // 2] * 4, "strides": [stride, stride]})]
    out = c1
    if post:
        nodes += [gs.Node("Relu", inputs=[c1], outputs=[r]),
                  gs.Node("Conv", inputs=[r, gs.Constant("w2", f32(2, 4, 1, 1)), gs.Constant("b2", f32(2))], outputs=[y])]
        out = y
    return gs.Graph(nodes=nodes, inputs=[x], outputs=[out], opset=21)


def crop_resizes(graph):
    return [n for n in graph.nodes if n.op == "Resize" and n.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize"]


@pytest.mark.parametrize("bands,kernel", [(4, 3), (3, 5), (2, 3)])
def test_banded_tail_computes_the_same_values(bands, kernel):
    x = np.random.default_rng(1).standard_normal((2, C, h, w)).astype(np.float32)
    (before,) = ort_run(tail_graph(kernel=kernel), {"x": x})
    graph = get_pass("band-upsampled-convs")(tail_graph(kernel=kernel), bands=bands)
    assert len(crop_resizes(graph)) >= bands
    assert not [n for n in graph.nodes if n.op == "Resize" and n not in crop_resizes(graph)]
    concat = next(n for n in graph.nodes if n.outputs[0] is graph.outputs[0])
    assert concat.op == "Concat" and concat.attrs["axis"] == 2
    (after,) = ort_run(graph, {"x": x})
    assert after.shape == before.shape == (2, 2, 37, 41)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_each_band_resizes_its_rows_and_the_halo_only():
    graph = get_pass("band-upsampled-convs")(tail_graph(H=40), bands=4)
    rows = sorted(int(n.inputs[3].inputs[0].inputs[1].values[0]) for n in crop_resizes(graph))
    assert rows == [11, 11, 12, 12]  # 10 rows each, +1 halo row at the image border, +2 inside


def test_tails_that_do_not_match_are_left_alone():
    for graph in (tail_graph(stride=2), tail_graph(mode="nearest"), tail_graph(H=11)):  # H=11: under 4 rows per band
        n = len(graph.nodes)
        get_pass("band-upsampled-convs")(graph, bands=4)
        assert not crop_resizes(graph) and len(graph.nodes) == n
    graph = tail_graph()
    graph.inputs[0].shape = ["S", C, "h", w]  # input height unknown: the ORT shortcut cannot be ruled out
    get_pass("band-upsampled-convs")(graph)
    assert not crop_resizes(graph)
    graph = tail_graph(H=40, post=False)  # ends at the kxk conv: still banded, concat after it
    get_pass("band-upsampled-convs")(graph)
    assert len(crop_resizes(graph)) == 4


def test_no_band_resizes_to_the_input_height():
    """ONNX Runtime's linear Resize ignores the region of interest on an axis whose output size
    equals its input size; with H=37 and 4 bands two bands would be h=10 rows high."""
    graph = get_pass("band-upsampled-convs")(tail_graph(H=37), bands=4)
    rows = [int(n.inputs[3].inputs[0].inputs[1].values[0]) for n in crop_resizes(graph)]
    assert h not in rows and len(rows) > 4


def test_rows_constant_without_row_axis_is_reused():
    x = np.random.default_rng(2).standard_normal((1, C, h, w)).astype(np.float32)
    (before,) = ort_run(tail_graph(rows_const=False), {"x": x})
    graph = get_pass("band-upsampled-convs")(tail_graph(rows_const=False))
    (after,) = ort_run(graph, {"x": x})
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_bands_must_be_two_or_more():
    with pytest.raises(QvggtError, match="bands must be >= 2"):
        get_pass("band-upsampled-convs")(tail_graph(), bands=1)
