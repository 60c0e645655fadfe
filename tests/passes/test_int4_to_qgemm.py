import numpy as np
import pytest

from qvggt_deploy.export.tensors import read_array
from qvggt_deploy.passes import get_pass
from qvggt_deploy.passes.int4_to_qgemm import channel_scales, int8_weights
from tests.onnx_util import int4_matmul_graph, int4_weights, ort_run


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("K,N,group", [(64, 24, 16), (256, 40, 64)])
def test_rewrite_runs_int8_and_stays_close(K, N, group, bias):
    graph, wd, b = int4_matmul_graph(K, N, group, bias=bias)
    get_pass("int4-to-qgemm")(graph)
    gemms = [n for n in graph.nodes if n.op == "DynamicQuantizeMatMul"]
    assert len(gemms) == 1 and "MatMul" not in [n.op for n in graph.nodes]
    assert len(gemms[0].inputs) == (5 if bias else 3)
    x = np.random.default_rng(1).standard_normal((2, 7, K)).astype(np.float32)
    (y,) = ort_run(graph, {"x": x})
    ref = x @ wd.T + (b if bias else 0)
    rel = np.abs(y - ref).mean() / np.abs(ref).mean()
    assert 0 < rel < 0.02, rel  # int8 activations: close, not exact
    assert read_array(gemms[0].inputs[1]).dtype == np.int8


def test_regridded_weights_are_within_half_a_channel_step():
    q, s, wd = int4_weights(128, 16, 32)  # q [N, K], s [N, K/group]
    q[3] = 0  # an all-zero channel
    c = channel_scales(q.T, s.T, 32)
    assert c[3] == 1 and np.all(c > 0)
    w = (q.astype(np.float32).reshape(16, 4, 32) * s[:, :, None]).reshape(16, 128).T  # [K, N]
    w8, c2 = int8_weights(q.T, s.T, 32)
    assert np.array_equal(c, c2) and w8.dtype == np.int8 and np.abs(w8.astype(int)).max() <= 127
    assert np.all(np.abs(w8 * c - w) <= c / 2 + 1e-9)
    # ... and that is a small fraction of the INT4 step of the coarsest block.
    assert np.all(c[np.arange(16) != 3] <= s.max(axis=1)[np.arange(16) != 3] * 8 / 127 + 1e-9)


def test_shared_weight_gives_one_chain():
    graph, wd, b = int4_matmul_graph(64, 16, 32, uses=3)
    get_pass("int4-to-qgemm")(graph)
    gemms = [n for n in graph.nodes if n.op == "DynamicQuantizeMatMul"]
    assert len(gemms) == 3 and len({n.inputs[1].name for n in gemms}) == 1


def test_leaves_fp16_layers_alone():
    graph, _, _ = int4_matmul_graph(64, 16, 32, dtype=np.float16)
    get_pass("int4-to-qgemm")(graph)
    assert "DynamicQuantizeMatMul" not in [n.op for n in graph.nodes]
