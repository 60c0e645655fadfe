import numpy as np
import pytest
import torch

from qvggt_deploy.graph.tensors import read_array
from qvggt_deploy.ops import plugin_contract as contract
from qvggt_deploy.ops.layout import unrepack_from_kernel
from qvggt_deploy.passes import get_pass
from qvggt_deploy.quant import quantizer
from tests.onnx_util import int4_matmul_graph, int4_weights


@pytest.mark.parametrize("bias", [True, False])
def test_fp16_int4_gemm_becomes_one_plugin_node(bias):
    K, N, group = 128, 48, 32
    graph, _, b = int4_matmul_graph(K, N, group, bias=bias, dtype=np.float16, uses=2)
    get_pass("w4a16-plugin")(graph)
    nodes = [n for n in graph.nodes if n.op == contract.OP_TYPE]
    assert len(nodes) == 2 and len(graph.nodes) == 2
    node = nodes[0]
    assert node.domain == contract.ONNX_DOMAIN
    contract.check_node_attrs(node.attrs, node.name)
    assert node.attrs["group_size"] == group and node.attrs["in_features"] == K
    assert node.attrs["out_features"] == N and node.attrs["has_bias"] == int(bias)
    assert len(node.inputs) == (4 if bias else 3)
    # The constants are the kernel layout of the original canonical weights, shared by both uses.
    q, s, _ = int4_weights(K, N, group)
    qweight, scales = unrepack_from_kernel(torch.from_numpy(np.array(read_array(node.inputs[1]))),
                                           torch.from_numpy(np.array(read_array(node.inputs[2]))), group)
    assert torch.equal(qweight, quantizer.pack_int4(torch.from_numpy(q)))
    np.testing.assert_array_equal(scales.float().numpy(), s)
    assert nodes[1].inputs[1] is node.inputs[1]


def test_fp32_and_kernel_incompatible_gemms_are_not_rewritten():
    graph, _, _ = int4_matmul_graph(64, 16, 32, dtype=np.float32)
    get_pass("w4a16-plugin")(graph)
    assert sorted(n.op for n in graph.nodes) == ["Add", "DequantizeLinear", "MatMul"]
    graph, _, _ = int4_matmul_graph(64, 20, 32, dtype=np.float16)  # N % 16 != 0
    get_pass("w4a16-plugin")(graph)
    assert sorted(n.op for n in graph.nodes) == ["Add", "DequantizeLinear", "MatMul"]


def test_a_bias_of_another_dtype_stays_an_add():
    """The shared matcher absorbs a bias only of the scale's type (an fp32 bias on an fp16 GEMM
    is not the plugin's fp16 bias)."""
    import onnx_graphsurgeon as gs

    K, N, group = 128, 48, 32
    graph, _, b = int4_matmul_graph(K, N, group, bias=True, dtype=np.float16)
    add = next(n for n in graph.nodes if n.op == "Add")
    add.inputs[1] = gs.Constant("w.bias_fp32", b.astype(np.float32))
    get_pass("w4a16-plugin")(graph)
    assert sorted(n.op for n in graph.nodes) == ["Add", contract.OP_TYPE]
    plugin = next(n for n in graph.nodes if n.op == contract.OP_TYPE)
    assert plugin.attrs[contract.ATTR_HAS_BIAS] == 0
