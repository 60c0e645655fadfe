import numpy as np
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import read_array
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


TPF, SPECIAL = 6, 2  # tokens per frame, special tokens per frame


def _layout_graph(K=64, N=24, group=32):
    graph, wd, b = int4_matmul_graph(K, N, group)
    graph.inputs[0].shape = ["batch", "tokens", K]
    graph.outputs[0].shape = ["batch", "tokens", N]
    return graph, wd, b


def _tokens(frames, K=64, outlier=200.0, seed=0):
    """``[2, frames * TPF, K]`` activations whose special tokens are far larger than the others."""
    x = np.random.default_rng(seed).standard_normal((2, frames * TPF, K)).astype(np.float32)
    special = (np.arange(frames * TPF) % TPF) < SPECIAL
    x[:, special] *= outlier
    return x, special


@pytest.mark.parametrize("frames", [1, 3])
def test_special_tokens_bypass_the_int8_gemm(frames):
    graph, wd, b = _layout_graph()
    get_pass("int4-to-qgemm")(graph, special_layers=["layer0"], tokens_per_frame=TPF, num_special=SPECIAL)
    ops = [n.op for n in graph.nodes]
    assert ops.count("DynamicQuantizeMatMul") == 1 and "ScatterElements" in ops
    get_pass("int4-to-matmulnbits")(graph)  # what the exporter runs next: the special rows' exact MatMul
    assert [n.op for n in graph.nodes].count("MatMulNBits") == 1
    x, special = _tokens(frames)
    (y,) = ort_run(graph, {"x": x})
    ref = x @ wd.T + b
    # special rows: the exact INT4 layer (fp32 math)
    np.testing.assert_allclose(y[:, special], ref[:, special], rtol=1e-5, atol=1e-3)
    # patch rows: int8, on a range their own (the outliers no longer set it)
    plain, _, _ = _layout_graph()
    get_pass("int4-to-qgemm")(plain)
    (y_plain,) = ort_run(plain, {"x": x})
    err = np.abs(y[:, ~special] - ref[:, ~special]).mean()
    err_plain = np.abs(y_plain[:, ~special] - ref[:, ~special]).mean()
    assert 0 < err < err_plain / 10, (err, err_plain)
    assert np.abs(y_plain[:, special] - ref[:, special]).max() > 0  # without the bypass they are int8 too


def test_special_layers_only():
    graph, _, _ = int4_matmul_graph(64, 16, 32, uses=2)
    get_pass("int4-to-qgemm")(graph, special_layers=["layer1"], tokens_per_frame=7, num_special=1)
    gemms = [n for n in graph.nodes if n.op == "DynamicQuantizeMatMul"]
    assert sorted(n.name for n in gemms) == ["layer0/DynamicQuantizeMatMul", "layer1/DynamicQuantizeMatMul"]
    assert gemms[0].inputs[0].name == "x" or gemms[1].inputs[0].name == "x"
    assert len([n for n in graph.nodes if n.op == "ScatterElements"]) == 1


def test_special_layers_need_a_layout():
    graph, _, _ = _layout_graph()
    with pytest.raises(QvggtError, match="num_special"):
        get_pass("int4-to-qgemm")(graph, special_layers=["layer0"], tokens_per_frame=0)
