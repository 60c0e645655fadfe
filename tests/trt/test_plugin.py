"""The graph-to-plugin contract: plugin node attributes against the contract constants."""
import sys
import types

import numpy as np
import pytest
from onnx import TensorProto, helper

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.trt.plugin import PluginContract, check_plugin_nodes, count_plugin_nodes, load_contract

CONTRACT = PluginContract(name="QvggtW4A16Gemm", version="1", namespace="qvggt",
                          attributes=("group_size", "in_features", "out_features", "has_bias"),
                          inputs=("input", "qweight", "scales", "bias"))


def plugin_graph(contract, k=256, n=64, g=128, bias=True, **overrides):
    attrs = {"group_size": g, "in_features": k, "out_features": n, "has_bias": int(bias),
             "plugin_version": contract.version, "plugin_namespace": contract.namespace}
    attrs.update(overrides)
    attrs = {key: v for key, v in attrs.items() if v is not None}
    inits = [helper.make_tensor("qweight", TensorProto.UINT8, [n, k // 2], np.zeros(n * k // 2, np.uint8)),
             helper.make_tensor("scales", TensorProto.FLOAT16, [n, k // g], np.ones(n * (k // g), np.float16))]
    inputs = ["x", "qweight", "scales"]
    if bias:
        inits.append(helper.make_tensor("bias", TensorProto.FLOAT16, [n], np.zeros(n, np.float16)))
        inputs.append("bias")
    node = helper.make_node(contract.name, inputs, ["y"], name="blocks.0.attn.qkv", domain="trt.plugins", **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["frames", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["frames", n])
    return helper.make_model(helper.make_graph([node], "g", [x], [y], initializer=inits))


def test_matching_graph_has_no_problems():
    model = plugin_graph(CONTRACT)
    assert count_plugin_nodes(model, CONTRACT) == 1
    assert check_plugin_nodes(model, CONTRACT) == []
    assert check_plugin_nodes(plugin_graph(CONTRACT, bias=False), CONTRACT) == []


@pytest.mark.parametrize("kwargs, problem", [
    ({"plugin_version": "2"}, "plugin_version '2', the plugin registers '1'"),
    ({"plugin_namespace": None}, "plugin_namespace '', the plugin registers 'qvggt'"),
    ({"group_size": None}, "attribute group_size missing"),
    ({"in_features": 2.0}, "attribute in_features must be an INT"),
    ({"out_features": 2 ** 31}, "does not fit int32"),
    ({"g": 96, "group_size": 96}, "group_size 96 does not divide in_features 256"),
    ({"has_bias": 0}, "4 inputs, the plugin takes 3"),
    ({"has_bias": 2}, "has_bias must be 0 or 1"),
    ({"out_features": 32}, "packed weight qweight holds 8192 bytes, expected 4096"),
    ({"alpha": 1}, "attributes ['alpha'] are not plugin fields"),
])
def test_mismatches_are_named(kwargs, problem):
    graph_kwargs = {k: kwargs.pop(k) for k in ("g",) if k in kwargs}
    problems = check_plugin_nodes(plugin_graph(CONTRACT, **graph_kwargs, **kwargs), CONTRACT)
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("plugin node blocks.0.attn.qkv") for p in problems)


def test_load_contract_reads_module_constants(monkeypatch):
    module = types.ModuleType("fake_contract")
    module.OP_TYPE, module.PLUGIN_VERSION, module.PLUGIN_NAMESPACE = "QvggtW4A16Gemm", "1", "qvggt"
    module.ATTRIBUTES = ("group_size", "in_features", "out_features", "has_bias")
    module.INPUTS = ("x", "qweight", "scales", "bias")
    monkeypatch.setitem(sys.modules, "fake_contract", module)
    contract = load_contract("fake_contract")
    assert contract.name == "QvggtW4A16Gemm" and contract.namespace == "qvggt"
    with pytest.raises(QvggtError, match="not available here"):
        load_contract("qvggt_deploy.no_such_contract")


@pytest.mark.parametrize("bias", [True, False])
def test_exported_plugin_node_matches_the_contract(bias):
    """A node as the exporter emits it (``make_plugin_node``: kernel-layout int32 weights, fp16
    scales) passes the checks the builder runs, with the contract constants the plugin registers."""
    import torch
    from qvggt_deploy.ops import plugin_contract as pc

    contract = load_contract()
    assert (contract.name, contract.version, contract.namespace) == (pc.OP_TYPE, pc.PLUGIN_VERSION, pc.PLUGIN_NAMESPACE)
    assert contract.attributes == tuple(pc.ATTRIBUTES) and contract.inputs[:3] == ("x", "qweight", "scales")
    n, k, g = 64, 256, 128
    gen = torch.Generator().manual_seed(0)
    qweight = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    scales = torch.rand(n, k // g, generator=gen).to(torch.float16) + 0.01
    node, inits = pc.make_plugin_node("aggregator.frame_blocks.0.attn.qkv", "x", "y", qweight, scales, g,
                                      bias=torch.zeros(n) if bias else None).to_onnx()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["frames", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["frames", n])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], initializer=inits))
    assert count_plugin_nodes(model, contract) == 1
    assert check_plugin_nodes(model, contract) == []
    model.graph.node[0].attribute[0].i = 48  # group_size 48: not a kernel group size (attributes sorted)
    assert any("group" in p for p in check_plugin_nodes(model, contract))


def test_contract_module_check_runs():
    contract = load_contract()
    assert contract.check_attrs is not None
    problems = check_plugin_nodes(plugin_graph(contract, k=96, g=32), contract)  # K % 64 != 0
    assert any("96" in p for p in problems), problems
