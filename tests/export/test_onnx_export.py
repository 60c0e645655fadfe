"""The exporter on the micro preset: float and quantized graphs against PyTorch."""
import json

import numpy as np
import onnx
import pytest
import torch

from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.export.onnx import export_onnx, token_rule_layers
from qvggt_deploy.graph.metadata import read_metadata
from qvggt_deploy.model import build_model
from qvggt_deploy.quant.rtn import rtn_recipe
from tests.micro_exports import H, W, micro_model
from tests.onnx_util import ort_run


def run_both(result, ref, images, accuracy_level=0):
    model = onnx.load(str(result.path))
    outs = ort_run(model, {"images": images.numpy()}, accuracy_level) if result.data_path is None else None
    if outs is None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
        outs = ort.InferenceSession(str(result.path), so).run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = ref(images)
    return dict(zip(OUTPUT_NAMES, outs)), {k: expected[k].numpy() for k in OUTPUT_NAMES}


def max_err(a, b):
    return {k: float(np.abs(a[k] - b[k]).max()) for k in OUTPUT_NAMES}


@pytest.mark.parametrize("frames", [1, 3])
def test_fp32_matches_torch_with_dynamic_frames(exports, frames):
    result, ref, _ = exports("fp32")
    images = torch.rand(frames, 3, H, W, generator=torch.Generator().manual_seed(frames))
    got, want = run_both(result, ref, images)
    for k in OUTPUT_NAMES:
        assert got[k].shape == want[k].shape
    errors = max_err(got, want)
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.parametrize("name", ["w4a16", "mixed"])
def test_quantized_ort_graph_is_the_fake_quantized_model(exports, images, name):
    """Exact mode: the ONNX graph computes what QuantLinear computes, to float rounding."""
    result, ref, _ = exports(name)
    got, want = run_both(result, ref, images, accuracy_level=0)
    errors = max_err(got, want)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("name,op", [("w4a16-int8-ext", "DynamicQuantizeMatMul"), ("w4a16-int8nbits", "MatMulNBits")])
def test_int8_activation_mode_is_close_not_exact(exports, images, name, op):
    result, ref, _ = exports(name)
    nodes = onnx.load(str(result.path)).graph.node
    int8 = [n for n in nodes if n.op_type == op]
    meta = read_metadata(result.path)
    if op == "MatMulNBits":
        assert not [n for n in nodes if n.op_type == "DynamicQuantizeMatMul"]
        assert all({a.name: a.i for a in n.attribute}.get("accuracy_level") == 4 for n in int8)
        assert meta["ort_compute"].startswith("W4A8, dynamic per-block")
    else:
        # W8A8: every block Linear's special tokens bypass the int8 GEMM through an exact MatMulNBits
        int4 = {k for k, v in json.loads(meta["plan"]).items() if v == "w4a16"}
        block_int4 = [n for n in token_rule_layers(micro_model()) if n in int4]
        exact = [n for n in nodes if n.op_type == "MatMulNBits"]
        assert block_int4 and len(exact) == len(block_int4) == len([n for n in nodes if n.op_type == "ScatterElements"])
        assert all("accuracy_level" not in {a.name for a in n.attribute} for n in exact)
        assert {n.name.split("/")[0] for n in exact} == set(block_int4)
        assert meta["ort_compute"].startswith("W8A8, dynamic per-tensor") and "bypass the int8 GEMM" in meta["ort_compute"]
    assert int8
    assert meta["ort_int8_kernel"] == ("qgemm" if op == "DynamicQuantizeMatMul" else "matmulnbits")
    got, want = run_both(result, ref, images)
    for k in ("depth", "world_points"):
        rel = np.abs(got[k] - want[k]).mean() / np.abs(want[k]).mean()
        assert rel < 0.05, (k, rel)


def test_metadata_records_recipe_plan_and_passes(exports):
    result, _, recipe = exports("w4a16")
    meta = read_metadata(result.path)
    assert meta["recipe_digest"] == recipe.digest
    assert meta["target"] == "ort" and meta["ort_accuracy_level"] == "0"
    assert meta["passes"].split(",") == ["fold-constants", "dedupe-constants", "band-upsampled-convs", "lower-attention",
                                         "lower-linears", "int4-to-matmulnbits", "cleanup"]
    assert meta["ort_int8_kernel"] == "none" and meta["ort_compute"].startswith("exact")
    assert meta["dense_loop"] == "false"
    assert meta["tokens_per_frame"] == "21" and meta["height"] == str(H)
    plan = json.loads(meta["plan"])
    assert plan["aggregator.frame_blocks.0.attn.qkv"] == "w4a16"
    assert plan["camera_head.embed_pose"] == "fp16"  # K = 9: RTN falls back
    model = onnx.load(str(result.path))
    assert {o.domain: o.version for o in model.opset_import}[""] == 21
    assert read_metadata(exports("fp32")[0].path)["recipe_digest"] == "none"


def test_camera_trunk_weights_are_shared_not_copied(exports):
    result, ref, _ = exports("w4a16")
    model = onnx.load(str(result.path))
    iterations = ref.camera_head.iterations
    users = [n for n in model.graph.node if n.op_type == "MatMulNBits" and n.name.startswith("camera_head.trunk.0.attn.qkv/")]
    assert len(users) == iterations
    assert len({n.input[1] for n in users}) == 1
    names = [i.name for i in model.graph.initializer]
    assert len(names) == len(set(names))
    assert not [n for n in model.graph.node if n.op_type == "Identity"]


def test_trt_graph_is_strongly_typed_qdq(exports, images):
    result, ref, _ = exports("w4a16-trt")
    model = onnx.load(str(result.path))
    init = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs
    for dq in dqs:
        q, s = init[dq.input[0]], init[dq.input[1]]
        attrs = {a.name: a.i for a in dq.attribute}
        assert q.data_type == onnx.TensorProto.INT4 and len(q.dims) == 2
        assert s.data_type == onnx.TensorProto.FLOAT16 and attrs["axis"] == 0
        assert list(s.dims) == [q.dims[0] // attrs["block_size"], q.dims[1]]
        assert len(dq.input) == 2  # no zero point
    for mm in [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in {d.output[0] for d in dqs}]:
        cast = producers[mm.input[0]]
        assert cast.op_type == "Cast" and {a.name: a.i for a in cast.attribute}["to"] == onnx.TensorProto.FLOAT16
    got, want = run_both(result, ref, images)  # fp16 math: close, not exact
    assert np.abs(got["depth"] - want["depth"]).max() < 0.05 * np.abs(want["depth"]).max()


def test_external_data_is_one_file(exports):
    result, _, _ = exports("w4a16-int8-ext")
    name = result.path.name
    assert result.data_path is not None and result.data_path.name == f"{name}.data"
    assert sorted(p.name for p in result.path.parent.glob(f"{name}*")) == [name, f"{name}.data"]
    model = onnx.load(str(result.path), load_external_data=False)
    locations = {e.value for i in model.graph.initializer for e in i.external_data if e.key == "location"}
    assert locations == {f"{name}.data"}
    offsets = [int(e.value) for i in model.graph.initializer for e in i.external_data if e.key == "offset"]
    assert offsets and all(o % 4096 == 0 for o in offsets)


def test_recipe_for_another_model_is_refused(tmp_path):
    other = build_model("micro", seed=1)
    recipe = rtn_recipe(other, "w4a16", 32)
    with pytest.raises(QvggtError, match="other weights"):
        export_onnx(micro_model(), tmp_path / "x.onnx", height=H, width=W, recipe=recipe)
    tiny_cfg_recipe = rtn_recipe(build_model(micro_model().cfg.replace(depth=5, name="micro")), "w4a16", 32)
    with pytest.raises(QvggtError, match="made for preset"):
        export_onnx(micro_model(), tmp_path / "x.onnx", height=H, width=W, recipe=tiny_cfg_recipe)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs,match", [
    (dict(height=50, width=56), "multiples of the patch size"),
    (dict(height=56, width=56, target="tensorflow"), "unknown target"),
    (dict(height=56, width=56, frames=0), "at least 1"),
    (dict(height=56, width=56, target="trt", ort_int8_activations=True), "--target ort only"),
    (dict(height=56, width=56, trt_plugin=True), "--target trt only"),
])
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(QvggtError, match=match):
        export_onnx(micro_model(), tmp_path / "x.onnx", **kwargs)


def test_read_metadata_of_bad_files(tmp_path):
    with pytest.raises(QvggtError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf\xff\xff")
    with pytest.raises(QvggtError, match="not a readable ONNX"):
        read_metadata(bad)


def test_fp16_conv_weights_are_stored_half(exports):
    result, _, _ = exports("mixed")
    assert read_metadata(result.path)["conv_precision"] == "fp16"
    model = onnx.load(str(result.path))
    init = {i.name: i for i in model.graph.initializer}
    head = [n for n in init if n.startswith("model.depth_head.") and n.endswith("weight_fp16")]
    assert head and all(init[n].data_type == onnx.TensorProto.FLOAT16 for n in head)
    assert init["model.aggregator.patch_embed.patch_embed.proj.weight"].data_type == onnx.TensorProto.FLOAT


def test_calibration_graph_exposes_filtered_inputs(tmp_path):
    from qvggt_deploy.quant.fake import special_token_mask

    model = micro_model()
    recipe = rtn_recipe(model, "w4a16", 32)
    layer = "aggregator.global_blocks.1.mlp.fc1"
    comp = torch.randn(5, 32, generator=torch.Generator().manual_seed(3))
    recipe.set_compensation(layer, comp)
    result = export_onnx(model, tmp_path / "calib.onnx", height=H, width=W, recipe=recipe, calibration_graph=True)
    assert read_metadata(result.path)["calibration_graph"] == "true"
    names = [o.name for o in onnx.load(str(result.path)).graph.output]
    assert names == list(OUTPUT_NAMES) + [f"{layer}.calib_input"]
    frames = 3
    images = torch.rand(frames, 3, H, W, generator=torch.Generator().manual_seed(1))
    *_, observed = ort_run(onnx.load(str(result.path)), {"images": images.numpy()})
    # The same input captured from the fake-quantized model, filtered as docs/method.md says.
    ref = micro_model()
    from qvggt_deploy.quant.recipe import apply_recipe

    apply_recipe(ref, recipe)
    captured = {}
    ref.get_submodule(layer).register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    with torch.no_grad():
        ref(images)
    x = captured["x"]
    keep = ~special_token_mask(x.shape[1], 21, 5)
    expected = torch.cat([x[:, keep], comp[None, None].expand(x.shape[0], frames, 5, 32).reshape(x.shape[0], -1, 32)], 1)
    np.testing.assert_allclose(observed, expected.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(QvggtError, match="calibration-graph"):
        export_onnx(micro_model(), tmp_path / "x.onnx", height=H, width=W, calibration_graph=True)


@pytest.mark.parametrize("quantized", [False, True])
def test_free_weights_gives_the_same_graph(exports, tmp_path, images, quantized):
    name = "w4a16" if quantized else "fp32"
    result, _, recipe = exports(name)
    model = micro_model()
    freed = export_onnx(model, tmp_path / "freed.onnx", height=H, width=W, recipe=recipe, free_weights=True)
    assert model.aggregator.frame_blocks[0].attn.qkv.weight is None
    a = ort_run(onnx.load(str(result.path)), {"images": images.numpy()})
    b = ort_run(onnx.load(str(freed.path)), {"images": images.numpy()})
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("quantized", [False, True])
def test_dense_loop_export_is_exact_and_survives_a_graphsurgeon_round_trip(tmp_path, quantized):
    """The per-frame Loop computes the batched heads' values (fp32 and W4A16, 1 and 3 frames), and
    graph tools that re-import the file (Polygraphy surgeon, our passes) see one name per tensor:
    the Loop body's names are scoped apart from the main graph's."""
    import onnx_graphsurgeon as gs

    from qvggt_deploy.quant.recipe import apply_recipe

    model = micro_model()
    recipe = rtn_recipe(model, "w4a16", 32) if quantized else None
    result = export_onnx(micro_model(), tmp_path / "m.onnx", height=H, width=W, recipe=recipe, dense_loop=True)
    ref = apply_recipe(micro_model(), recipe) if quantized else model
    assert [n.op_type for n in onnx.load(str(result.path)).graph.node].count("Loop") == 1
    for frames in (1, 3):
        images = torch.rand(frames, 3, H, W, generator=torch.Generator().manual_seed(frames))
        errors = max_err(*run_both(result, ref, images))
        assert max(errors.values()) < 1e-4, errors
    graph = gs.import_onnx(onnx.load(str(result.path)))
    model = gs.export_onnx(graph.cleanup().toposort())
    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(7))
    outs = dict(zip(OUTPUT_NAMES, ort_run(model, {"images": images.numpy()})))
    with torch.no_grad():
        want = ref(images)
    for k in OUTPUT_NAMES:
        assert np.abs(outs[k] - want[k].numpy()).max() < 1e-4, k
