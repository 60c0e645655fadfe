import numpy as np
import pytest

from qvggt_deploy.graph.int4 import int4_weight_matmuls
from tests.onnx_util import int4_matmul_graph

gs = pytest.importorskip("onnx_graphsurgeon")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_finds_each_gemm_and_its_bias(dtype):
    graph, _, _ = int4_matmul_graph(128, 48, 32, bias=True, dtype=dtype, uses=2)
    found = int4_weight_matmuls(graph)
    assert len(found) == 2
    for m in found:
        assert m.block == 32 and tuple(m.q.shape) == (128, 48) and m.bias is not None
        assert [n.op for n in m.tail] == ["MatMul", "Add"] and m.out is m.tail[-1].outputs[0]
    assert {m.name for m in found} == {"layer0", "layer1"}


def test_a_bias_of_another_type_is_left_out():
    graph, _, b = int4_matmul_graph(128, 48, 32, bias=True, dtype=np.float16)
    add = next(n for n in graph.nodes if n.op == "Add")
    add.inputs[1] = gs.Constant("bias32", b.astype(np.float32))
    (m,) = int4_weight_matmuls(graph)
    assert m.bias is None and [n.op for n in m.tail] == ["MatMul"]


def test_other_blockings_are_not_int4_gemms():
    graph, _, _ = int4_matmul_graph(128, 48, 32, bias=False)
    dq = next(n for n in graph.nodes if n.op == "DequantizeLinear")
    dq.attrs["block_size"] = 8  # below 16: not a form the rewrites take
    assert int4_weight_matmuls(graph) == []
