"""The plugin contract: qvggt_deploy/ops/plugin_contract.py and kernels/trt_plugin/qvggt_plugin_contract.h
must say the same, and make_plugin_node must build what the plugin reads."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.ops import plugin_contract as pc
from qvggt_deploy.ops.layout import unrepack_from_kernel
from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

HEADER = Path(__file__).resolve().parents[2] / "kernels" / "trt_plugin" / "qvggt_plugin_contract.h"

# C++ constant -> Python constant. Every constexpr of the header must be listed (and agree).
MIRROR = {
    "kOpType": "OP_TYPE", "kPluginVersion": "PLUGIN_VERSION", "kPluginNamespace": "PLUGIN_NAMESPACE",
    "kOnnxDomain": "ONNX_DOMAIN", "kAttrGroupSize": "ATTR_GROUP_SIZE", "kAttrInFeatures": "ATTR_IN_FEATURES",
    "kAttrOutFeatures": "ATTR_OUT_FEATURES", "kAttrHasBias": "ATTR_HAS_BIAS",
    "kOnnxAttrPluginVersion": "ONNX_ATTR_PLUGIN_VERSION", "kOnnxAttrPluginNamespace": "ONNX_ATTR_PLUGIN_NAMESPACE",
    "kInputX": "INPUT_X", "kInputQweight": "INPUT_QWEIGHT", "kInputScales": "INPUT_SCALES",
    "kInputBias": "INPUT_BIAS", "kNumOutputs": "NUM_OUTPUTS", "kKMultiple": "K_MULTIPLE",
    "kNMultiple": "N_MULTIPLE", "kGroupMultiple": "GROUP_MULTIPLE",
}


def header_constants():
    text = HEADER.read_text()
    strings = dict(re.findall(r'constexpr\s+char\s+(\w+)\[\]\s*=\s*"([^"]*)"\s*;', text))
    ints = {k: int(v) for k, v in re.findall(r"constexpr\s+int32_t\s+(\w+)\s*=\s*(-?\d+)\s*;", text)}
    assert len(strings) + len(ints) == len(re.findall(r"\bconstexpr\b", text)), "a constexpr the parser missed"
    return {**strings, **ints}


def test_header_and_python_agree():
    constants = header_constants()
    assert set(constants) == set(MIRROR), "update MIRROR when the contract grows"
    for cpp_name, py_name in MIRROR.items():
        assert constants[cpp_name] == getattr(pc, py_name), f"{cpp_name} != {py_name}"


def test_attribute_and_input_tables_match_the_constants():
    assert list(pc.ATTRIBUTES) == [pc.ATTR_GROUP_SIZE, pc.ATTR_IN_FEATURES, pc.ATTR_OUT_FEATURES, pc.ATTR_HAS_BIAS]
    names = [spec.name for spec in pc.INPUTS]
    assert names.index("x") == pc.INPUT_X and names.index("qweight") == pc.INPUT_QWEIGHT
    assert names.index("scales") == pc.INPUT_SCALES and names.index("bias") == pc.INPUT_BIAS


def canonical(n, k, group):
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(0))
    scales = compute_scales(w, 4, group)
    return pack_int4(quantize(w, scales, 4, group)), scales.half()


@pytest.mark.parametrize("bias", [True, False])
def test_make_plugin_node(bias):
    qweight, scales = canonical(64, 256, 64)
    b = torch.randn(64) if bias else None
    node = pc.make_plugin_node("blk0.fc1", "x", "y", qweight.numpy(), scales, 64, bias=b)
    assert node.op_type == "QvggtW4A16Gemm" and node.domain == "trt.plugins"
    assert node.inputs[:3] == ["x", "blk0.fc1.qweight", "blk0.fc1.scales"] and node.outputs == ["y"]
    assert len(node.inputs) == (4 if bias else 3)
    assert node.attrs == {"group_size": 64, "in_features": 256, "out_features": 64, "has_bias": int(bias),
                          "plugin_version": "1", "plugin_namespace": ""}
    qw, sc = node.constants["blk0.fc1.qweight"], node.constants["blk0.fc1.scales"]
    assert qw.dtype == np.int32 and qw.shape == (4, 512) and sc.dtype == np.float16 and sc.shape == (4, 64)
    back, back_scales = unrepack_from_kernel(torch.from_numpy(qw), torch.from_numpy(sc), 64)
    assert torch.equal(back, qweight) and torch.equal(back_scales, scales)
    if bias:
        assert node.constants["blk0.fc1.bias"].dtype == np.float16
    pc.check_node_attrs(node.attrs, node.name)


def test_make_plugin_node_rejects_what_the_plugin_would():
    qweight, scales = canonical(24, 128, 64)
    with pytest.raises(QvggtError, match="N=24"):
        pc.make_plugin_node("bad", "x", "y", qweight, scales, 64)
    with pytest.raises(QvggtError, match="lacks attribute"):
        pc.check_node_attrs({"group_size": 64}, "n0")
    with pytest.raises(QvggtError, match="has_bias"):
        pc.check_node_attrs({"group_size": 64, "in_features": 128, "out_features": 32, "has_bias": 2})


def test_node_builds_a_valid_onnx_model():
    onnx = pytest.importorskip("onnx")
    qweight, scales = canonical(32, 128, 32)
    node, initializers = pc.make_plugin_node("fc", "x", "y", qweight, scales, 32, bias=torch.zeros(32)).to_onnx()
    graph = onnx.helper.make_graph(
        [node], "w4a16", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, ["batch", "tokens", 128])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, ["batch", "tokens", 32])], initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid(pc.ONNX_DOMAIN, 1)])
    onnx.checker.check_model(model)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    assert attrs["group_size"] == 32 and attrs["plugin_version"] == b"1"
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert types == {"fc.qweight": onnx.TensorProto.INT32, "fc.scales": onnx.TensorProto.FLOAT16,
                     "fc.bias": onnx.TensorProto.FLOAT16}
