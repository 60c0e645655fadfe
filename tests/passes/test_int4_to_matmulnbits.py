import numpy as np
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.passes import get_pass
from tests.onnx_util import int4_matmul_graph, ort_run


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("K,N,group", [(64, 24, 16), (128, 40, 128), (256, 17, 64)])
def test_rewrite_is_exact_in_level_0(K, N, group, bias):
    graph, wd, b = int4_matmul_graph(K, N, group, bias=bias)
    x = np.random.default_rng(1).standard_normal((2, 7, K)).astype(np.float32)
    ref = x @ wd.T + (b if bias else 0)
    get_pass("int4-to-matmulnbits")(graph)
    ops = [n.op for n in graph.nodes]
    assert ops == ["MatMulNBits"], ops
    node = graph.nodes[0]
    assert node.attrs["K"] == K and node.attrs["N"] == N and node.attrs["block_size"] == group
    assert "accuracy_level" not in node.attrs  # level 0 is the absent attribute
    assert len(node.inputs) == (6 if bias else 3)
    (y,) = ort_run(graph, {"x": x})
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_level_4_writes_the_attribute_and_stays_close():
    graph, wd, b = int4_matmul_graph(128, 32, 32)
    get_pass("int4-to-matmulnbits")(graph, accuracy_level=4)
    assert graph.nodes[0].attrs["accuracy_level"] == 4
    x = np.random.default_rng(2).standard_normal((1, 7, 128)).astype(np.float32)
    (y,) = ort_run(graph, {"x": x})
    ref = x @ wd.T + b
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def test_shared_weight_gives_one_initializer():
    graph, wd, b = int4_matmul_graph(64, 16, 32, uses=3)
    get_pass("int4-to-matmulnbits")(graph)
    nbits = [n for n in graph.nodes if n.op == "MatMulNBits"]
    assert len(nbits) == 3
    assert len({n.inputs[1].name for n in nbits}) == 1 and len({n.inputs[2].name for n in nbits}) == 1
    x = np.random.default_rng(3).standard_normal((1, 7, 64)).astype(np.float32)
    for y in ort_run(graph, {"x": x}):
        np.testing.assert_allclose(y, x @ wd.T + b, rtol=1e-5, atol=1e-5)


def test_leaves_non_matching_graphs_alone():
    graph, _, _ = int4_matmul_graph(64, 16, 8)  # block 8 < 16: not a MatMulNBits block size
    get_pass("int4-to-matmulnbits")(graph)
    assert sorted(n.op for n in graph.nodes) == ["Add", "DequantizeLinear", "MatMul"]
    graph, _, _ = int4_matmul_graph(64, 16, 32, dtype=np.float16)
    graph.inputs[0].dtype = np.float32  # input type differs from the scales: not rewritten
    get_pass("int4-to-matmulnbits")(graph)
    assert "MatMulNBits" not in [n.op for n in graph.nodes]


def test_bad_accuracy_level():
    graph, _, _ = int4_matmul_graph(64, 16, 32)
    with pytest.raises(QvggtError, match="accuracy_level"):
        get_pass("int4-to-matmulnbits")(graph, accuracy_level=7)
