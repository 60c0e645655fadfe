"""loop-dense-heads: a per-frame Loop computes what the batched marker stood for."""
import numpy as np
import onnx_graphsurgeon as gs
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.markers import DENSE_MARKER, MARKER_DOMAIN
from qvggt_deploy.passes import get_pass
from tests.onnx_util import ort_run

N, C2, H, W = 6, 4, 2, 3  # tokens, 2C, image size


def body_graph():
    """One frame: depth = sum of tap_0 over tokens+channels + 2 * tap_3 mean (per pixel: broadcast)."""
    taps = [gs.Variable(f"tap_{k}", dtype=np.float32, shape=[1, 1, N, C2]) for k in range(4)]
    s0 = gs.Variable("s0", dtype=np.float32)
    s3 = gs.Variable("s3", dtype=np.float32)
    nodes = [gs.Node("ReduceSum", inputs=[taps[0]], outputs=[s0], attrs={"keepdims": 0}),
             gs.Node("ReduceMean", inputs=[taps[3]], outputs=[s3], attrs={"keepdims": 0})]
    outs = []
    for k, channels in enumerate((1, None, 3, None)):
        shape = [1, 1, H, W] + ([channels] if channels else [])
        ones = gs.Constant(f"ones_{k}", np.full(shape, k + 1, np.float32))
        src = s0 if k % 2 == 0 else s3
        out = gs.Variable(f"frame_out_{k}", dtype=np.float32, shape=shape)
        nodes.append(gs.Node("Mul", inputs=[ones, src], outputs=[out]))
        outs.append(out)
    return gs.Graph(nodes=nodes, inputs=taps, outputs=outs, opset=21)


def marker_graph(frames_dim="S"):
    taps = [gs.Variable(f"t{k}", dtype=np.float32, shape=[1, frames_dim, N, C2]) for k in range(4)]
    images = gs.Variable("images", dtype=np.float32, shape=[1, frames_dim, 3, H, W])
    outs = [gs.Variable(name, dtype=np.float32) for name in ("depth", "depth_conf", "world_points", "conf")]
    node = gs.Node(DENSE_MARKER, domain=MARKER_DOMAIN, inputs=[*taps, images], outputs=outs)
    return gs.Graph(nodes=[node], inputs=[*taps, images], outputs=outs, opset=21)


@pytest.mark.parametrize("frames", [1, 3])
def test_loop_runs_the_body_per_frame(frames):
    graph = get_pass("loop-dense-heads")(marker_graph(), body=body_graph())
    assert [n.op for n in graph.nodes].count("Loop") == 1
    rng = np.random.default_rng(frames)
    feed = {f"t{k}": rng.standard_normal((1, frames, N, C2)).astype(np.float32) for k in range(4)}
    feed["images"] = rng.random((1, frames, 3, H, W)).astype(np.float32)
    depth, depth_conf, points, conf = ort_run(graph, feed)
    assert depth.shape == (1, frames, H, W, 1) and points.shape == (1, frames, H, W, 3)
    assert depth_conf.shape == conf.shape == (1, frames, H, W)
    for i in range(frames):  # frame i sees only frame i of every tap
        s0 = feed["t0"][0, i].sum()
        s3 = feed["t3"][0, i].mean()
        np.testing.assert_allclose(depth[0, i], np.full((H, W, 1), s0), rtol=1e-5)
        np.testing.assert_allclose(depth_conf[0, i], np.full((H, W), 2 * s3), rtol=1e-5)
        np.testing.assert_allclose(points[0, i], np.full((H, W, 3), 3 * s0), rtol=1e-5)
        np.testing.assert_allclose(conf[0, i], np.full((H, W), 4 * s3), rtol=1e-5)


def test_needs_exactly_one_marker():
    with pytest.raises(QvggtError, match="expected one DenseHeads marker, found 0"):
        get_pass("loop-dense-heads")(gs.Graph(nodes=[], inputs=[], outputs=[], opset=21), body=body_graph())


def test_body_with_unknown_inputs_is_refused():
    body = body_graph()
    body.inputs[0].name = "tokens"
    with pytest.raises(QvggtError, match="unexpected .*tokens"):
        get_pass("loop-dense-heads")(marker_graph(), body=body)


def test_body_names_are_scoped_apart_from_the_main_graph():
    body = body_graph()
    main = marker_graph()
    clash = gs.Constant("ones_0", np.zeros(1, np.float32))  # same name as a body constant
    out = gs.Variable("extra", dtype=np.float32)
    main.nodes.append(gs.Node("Identity", inputs=[clash], outputs=[out]))
    main.outputs.append(out)
    graph = get_pass("loop-dense-heads")(main, body=body)
    loop = next(n for n in graph.nodes if n.op == "Loop")
    inner = set(loop.attrs["body"].tensors())
    assert "dense_heads/ones_0" in inner and "ones_0" not in inner
    outer = {"t0", "t1", "t2", "t3", "images"}  # read from the enclosing scope by the Gathers
    assert all(name.startswith("dense_heads/") for name in inner - outer)


def test_trt_target_refuses_the_loop(tmp_path):
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.model import build_model

    with pytest.raises(QvggtError, match="dense-loop is for --target ort"):
        export_onnx(build_model("micro"), tmp_path / "m.onnx", height=56, width=56, target="trt", dense_loop=True)
    assert not (tmp_path / "m.onnx").exists()
