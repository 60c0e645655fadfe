import numpy as np
import pytest
import torch

from qvggt_deploy.export.tensors import read_array
from qvggt_deploy.passes import get_pass
from qvggt_deploy.passes.w4a16_plugin import plugin_contract
from qvggt_deploy.quant import quantizer
from tests.onnx_util import int4_matmul_graph, int4_weights


@pytest.mark.parametrize("bias", [True, False])
def test_fp16_int4_gemm_becomes_one_plugin_node(bias):
    K, N, group = 128, 48, 32
    graph, _, b = int4_matmul_graph(K, N, group, bias=bias, dtype=np.float16, uses=2)
    get_pass("w4a16-plugin")(graph)
    contract = plugin_contract()
    nodes = [n for n in graph.nodes if n.op == contract.OP_TYPE]
    assert len(nodes) == 2 and len(graph.nodes) == 2
    node = nodes[0]
    assert node.attrs["group_size"] == group and node.attrs["in_features"] == K
    assert node.attrs["out_features"] == N and node.attrs["has_bias"] == int(bias)
    assert node.attrs["plugin_version"] == str(contract.PLUGIN_VERSION)
    assert len(node.inputs) == (4 if bias else 3)
    # Weights in the canonical (kernel) format, shared by both uses.
    q, s, _ = int4_weights(K, N, group)
    qweight, scales = read_array(node.inputs[1]), read_array(node.inputs[2])
    assert qweight.dtype == np.uint8 and qweight.shape == (N, K // 2)
    np.testing.assert_array_equal(qweight, quantizer.pack_int4(torch.from_numpy(q)).numpy())
    assert scales.dtype == np.float16 and scales.shape == (N, K // group)
    np.testing.assert_array_equal(scales.astype(np.float32), s)
    assert nodes[1].inputs[1] is node.inputs[1]


def test_fp32_gemms_are_not_rewritten():
    graph, _, _ = int4_matmul_graph(64, 16, 32, dtype=np.float32)
    get_pass("w4a16-plugin")(graph)
    assert sorted(n.op for n in graph.nodes) == ["Add", "DequantizeLinear", "MatMul"]
