"""Lint: our exports pass; planted bad graphs fail with the node named."""
import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto as TP

from qvggt_deploy.cli.main import main
from qvggt_deploy.export.lint import lint_file, lint_model
from qvggt_deploy.graph.tensors import pack_onnx_int4

K, N, G = 64, 32, 32


def int4_init(name="w"):
    q = np.random.default_rng(0).integers(-8, 8, size=(K, N)).astype(np.int8)
    return oh.make_tensor(name, TP.INT4, [K, N], pack_onnx_int4(q), raw=True)


def f16(name, shape, value=0.01):
    return onnx.numpy_helper.from_array(np.full(shape, value, np.float16), name)


def model(nodes, inits, inputs=None, opset=21, metadata=None, x_type=TP.FLOAT16, domains=()):
    inputs = inputs or [oh.make_tensor_value_info("x", x_type, [2, K])]
    graph = oh.make_graph(nodes, "g", inputs, [oh.make_tensor_value_info("y", TP.UNDEFINED, None)], inits)
    m = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)] + [oh.make_opsetid(d, 1) for d in domains])
    if metadata:
        oh.set_model_props(m, metadata)
    return m


def good_w4a16(**kw):
    nodes = [oh.make_node("DequantizeLinear", ["w", "s"], ["wd"], name="fc/DequantizeLinear", axis=0, block_size=G),
             oh.make_node("MatMul", ["x", "wd"], ["y"], name="fc/MatMul")]
    return model(nodes, [int4_init(), f16("s", [K // G, N])], **kw)


def errors(m, target="trt", **kw):
    return [(f.rule, f.node) for f in lint_model(m, target=target, **kw).errors]


def test_a_clean_weight_only_gemm_passes():
    assert errors(good_w4a16()) == []


def test_int4_with_a_zero_point_is_refused():
    m = good_w4a16()
    m.graph.node[0].input.append("zp")
    zp = oh.make_tensor("zp", TP.INT4, [K // G, N], pack_onnx_int4(np.ones((K // G, N), np.int8)), raw=True)
    m.graph.initializer.append(zp)
    assert ("int4-weights", "fc/DequantizeLinear") in errors(m)


def test_int4_weights_computed_at_run_time_are_refused():
    nodes = [oh.make_node("Identity", ["w"], ["w2"], name="copy"),
             oh.make_node("DequantizeLinear", ["w2", "s"], ["wd"], name="fc/DequantizeLinear", axis=0, block_size=G),
             oh.make_node("MatMul", ["x", "wd"], ["y"], name="fc/MatMul")]
    assert ("int4-weights", "fc/DequantizeLinear") in errors(model(nodes, [int4_init(), f16("s", [K // G, N])]))


def test_int4_below_opset_21_is_refused():
    assert ("opset", "fc/DequantizeLinear") in errors(good_w4a16(opset=19))


def test_bad_block_layout_and_nonpositive_scales():
    m = good_w4a16()
    m.graph.initializer[1].CopyFrom(f16("s", [K // 16, N]))
    assert ("int4-weights", "fc/DequantizeLinear") in errors(m)
    m = good_w4a16()
    m.graph.initializer[1].CopyFrom(f16("s", [K // G, N], value=0.0))
    assert ("int4-weights", "fc/DequantizeLinear") in errors(m)


def test_int4_blocked_along_n_is_refused():
    nodes = [oh.make_node("DequantizeLinear", ["w", "s"], ["wd"], name="fc/DequantizeLinear", axis=1, block_size=G),
             oh.make_node("MatMul", ["x", "wd"], ["y"], name="fc/MatMul")]
    findings = lint_model(model(nodes, [int4_init(), f16("s", [K, N // G])]), target="trt").errors
    assert [(f.rule, f.node) for f in findings] == [("int4-weights", "fc/DequantizeLinear")]
    assert "blocks along K" in findings[0].message


def test_matmul_without_the_fp16_cast_is_refused():
    m = good_w4a16(x_type=TP.FLOAT)  # fp32 activation into an fp16 dequantized weight
    assert ("precision", "fc/MatMul") in errors(m)


def test_plan_layer_not_cast_to_fp16():
    nodes = [oh.make_node("MatMul", ["x", "w"], ["y"], name="blocks.0.fc/MatMul")]
    w = onnx.numpy_helper.from_array(np.zeros((K, N), np.float32), "w")
    m = model(nodes, [w], x_type=TP.FLOAT, metadata={"qvggt.plan": '{"blocks.0.fc": "fp16"}'})
    result = lint_model(m, target="trt", metadata={"plan": '{"blocks.0.fc": "fp16"}'})
    assert [(f.rule, f.node) for f in result.errors] == [("precision", "blocks.0.fc/MatMul")]
    assert "not Cast to fp16" in str(result.errors[0])


def test_qdq_pair_with_mismatched_scales_is_refused():
    nodes = [oh.make_node("QuantizeLinear", ["x", "s1", "zp"], ["q"], name="act/QuantizeLinear"),
             oh.make_node("DequantizeLinear", ["q", "s2", "zp"], ["y"], name="act/DequantizeLinear")]
    inits = [f16("s1", [], 0.1), f16("s2", [], 0.2), onnx.numpy_helper.from_array(np.array(0, np.int8), "zp")]
    assert ("qdq-mismatch", "act/DequantizeLinear") in errors(model(nodes, inits))
    inits[1] = f16("s2", [], 0.1)  # equal values under another name: fine
    assert errors(model(nodes, inits)) == []


def test_dynamic_activation_scale_is_refused_for_tensorrt_only():
    nodes = [oh.make_node("ReduceMax", ["x"], ["m"], name="absmax", keepdims=1),
             oh.make_node("QuantizeLinear", ["x", "m"], ["q"], name="act/QuantizeLinear", axis=-1, block_size=K, output_dtype=TP.INT8),
             oh.make_node("DequantizeLinear", ["q", "m"], ["y"], name="act/DequantizeLinear", axis=-1, block_size=K)]
    m = model(nodes, [])
    assert ("dynamic-scale", "act/QuantizeLinear") in errors(m)
    assert errors(m, target="ort") == []


def test_unsupported_ops_are_named():
    nodes = [oh.make_node("MatMulNBits", ["x", "b", "sc"], ["y"], name="fc/MatMulNBits", domain="com.microsoft",
                          K=K, N=N, bits=4, block_size=G)]
    inits = [onnx.numpy_helper.from_array(np.zeros((N, K // G, G // 2), np.uint8), "b"),
             onnx.numpy_helper.from_array(np.ones(N * K // G, np.float32), "sc")]
    m = model(nodes, inits, x_type=TP.FLOAT, domains=["com.microsoft"])
    assert ("unsupported-op", "fc/MatMulNBits") in errors(m)
    assert errors(m, target="ort") == []
    m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.zeros((N, K // G, G), np.uint8), "b"))
    assert ("matmulnbits", "fc/MatMulNBits") in errors(m, target="ort")
    marker = model([oh.make_node("Linear", ["x"], ["y"], name="marker", domain="qvggt", layer="a")], [], domains=["qvggt"])
    assert ("unsupported-op", "marker") in errors(marker, target="ort")
    einsum_free = model([oh.make_node("StringNormalizer", ["x"], ["y"], name="strings")], [])
    assert ("unsupported-op", "strings") in errors(einsum_free)


def test_plugin_nodes_are_checked_against_the_contract():
    from qvggt_deploy.ops import plugin_contract as c

    node = oh.make_node(c.OP_TYPE, ["x", "qw", "sc"], ["y"], name="fc/plugin", domain=c.ONNX_DOMAIN,
                        group_size=32, in_features=48, out_features=32, has_bias=0, plugin_version="1")
    assert ("plugin", "fc/plugin") in errors(model([node], [], domains=[c.ONNX_DOMAIN]))


def test_layernorm_in_fp16_is_a_warning():
    nodes = [oh.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1)]
    m = model(nodes, [f16("g", [K], 1.0), f16("b", [K])])
    result = lint_model(m)
    assert result and [f.rule for f in result.warnings] == ["fp32-islands"]


@pytest.mark.parametrize("name", ["fp32", "w4a16", "mixed", "w4a16-trt"])
def test_our_exports_pass(exports, name):
    result, _, _ = exports(name)
    lint = lint_file(result.path)
    assert lint, "\n".join(map(str, lint.errors))
    assert lint.target == ("trt" if name.endswith("-trt") else "ort")


def test_lint_cli(exports, tmp_path, capsys):
    result, _, _ = exports("w4a16-trt")
    assert main(["lint", str(result.path)]) == 0
    bad = tmp_path / "bad.onnx"
    onnx.save(good_w4a16(opset=19), str(bad))
    assert main(["lint", str(bad), "--json", str(tmp_path / "lint.json")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "node 'fc/DequantizeLinear'" in out
    assert (tmp_path / "lint.json").exists()
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["lint", str(tmp_path / "junk.onnx")]) == 1
