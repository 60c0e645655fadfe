"""Builder control flow against a recording fake ``tensorrt`` (what the profile sets), and the real
build on a machine with TensorRT (skipped here)."""

import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import is_available
from qvggt_deploy.trt import builder as B
from qvggt_deploy.trt.profiles import parse_profile

from . import fake_tensorrt

HAS_TRT = is_available("tensorrt")


@pytest.fixture
def fake_trt(monkeypatch):
    module = fake_tensorrt.make_module()
    monkeypatch.setattr(B, "trt", module)
    monkeypatch.setattr(B, "is_available", lambda name: True)
    monkeypatch.setattr(B, "_LOGGER", None)
    monkeypatch.setattr(B, "_LOADED_LIBRARIES", {})
    return module


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_without_tensorrt_one_sentence(tmp_path, profile_doc):
    with pytest.raises(QvggtError) as info:
        B.build_engine(tmp_path / "m.onnx", parse_profile(profile_doc), tmp_path / "e.engine")
    assert str(info.value).startswith("tensorrt is not installed:")
    assert "\n" not in str(info.value)


def test_profile_reaches_the_builder(fake_trt, tmp_path, profile_doc):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")
    plugin = tmp_path / "libqvggt_trt_plugin.so"
    plugin.write_bytes(b"so")
    cache = tmp_path / "test.timing"
    cache.write_bytes(b"old")
    profile = parse_profile(profile_doc)
    out = tmp_path / "out" / "e.engine"
    B.build_engine(onnx_path, profile, out, plugin_library=plugin, timing_cache=profile.timing_cache_path(tmp_path / "e"))
    state = fake_trt.STATE
    assert state["libraries"] == [str(plugin.resolve())]
    assert state["parsed"] == str(onnx_path)
    assert state["network"].flags == 1 << int(fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    config = state["config"]
    assert config.pools == {fake_trt.MemoryPoolType.WORKSPACE: 256 << 20,
                            fake_trt.MemoryPoolType.TACTIC_SHARED_MEMORY: 48 << 10}
    assert config.builder_optimization_level == 2 and config.max_aux_streams == 0
    assert config.flags == []  # strongly typed: no FP16/INT8 precision flags
    (opt,) = config.profiles
    assert opt.shapes == {"images": ((1, 3, 56, 56), (2, 3, 56, 56), (4, 3, 56, 56))}
    assert config.ignore_mismatch is False
    assert out.read_bytes() == b"PLAN"
    assert cache.read_bytes() == b"old+timed"  # loaded, extended, saved
    assert not list(tmp_path.rglob(".*.tmp"))


def test_version_compatible_serializes_the_plugin(fake_trt, tmp_path, profile_doc):
    profile_doc["builder"]["version_compatible"] = True
    profile_doc["builder"]["timing_cache"] = None
    plugin = tmp_path / "lib.so"
    plugin.write_bytes(b"so")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    B.build_engine(tmp_path / "m.onnx", parse_profile(profile_doc), tmp_path / "e.engine", plugin_library=plugin)
    config = fake_trt.STATE["config"]
    assert config.flags == [fake_trt.BuilderFlag.VERSION_COMPATIBLE]
    assert config.plugins_to_serialize == [str(plugin.resolve())]


def test_two_dynamic_axes_are_refused(fake_trt, profile_doc):
    network = fake_tensorrt.Network(0, [fake_tensorrt.Tensor("images", (-1, 3, -1, 56))])
    with pytest.raises(QvggtError, match="only the frame axis may be dynamic"):
        B.frame_shapes(network, parse_profile(profile_doc).frames)


def test_failed_build_names_the_likely_cause(fake_trt, tmp_path, profile_doc, monkeypatch):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(fake_trt.Builder, "build_serialized_network", lambda self, n, c: None)
    with pytest.raises(QvggtError, match="use split: true or lower frames.max"):
        B.build_engine(tmp_path / "m.onnx", parse_profile(profile_doc), tmp_path / "e.engine")
    assert not (tmp_path / "e.engine").exists()


def test_parse_errors_are_reported_by_node(fake_trt, tmp_path, profile_doc):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    errors = [fake_trt.ParserError("no importer", node=3, node_name="", node_operator="W4A16Linear")]
    errors += [fake_trt.ParserError(f"bad attr {i}", node=i, node_name=f"/blk{i}/mm", node_operator="MatMul")
               for i in range(5)]
    fake_trt.STATE["parse_errors"] = errors
    with pytest.raises(QvggtError) as info:
        B.build_engine(tmp_path / "m.onnx", parse_profile(profile_doc), tmp_path / "e.engine")
    text = str(info.value)
    assert "node 3 (W4A16Linear): no importer" in text  # no node name: its index
    assert "node /blk3/mm (MatMul): bad attr 3" in text and "bad attr 4" not in text
    assert text.endswith("(+1 more)")
    assert "built" not in fake_trt.STATE and not (tmp_path / "e.engine").exists()


def test_missing_plugin_library(fake_trt, tmp_path):
    with pytest.raises(QvggtError, match="plugin library not found"):
        B.LoadPluginLibrary(tmp_path / "nope.so")()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed")
def test_real_build_and_run_micro(tmp_path, profile_doc):
    """Float micro split graphs -> engines -> TrtRunner, against PyTorch (needs a GPU + TensorRT)."""
    import numpy as np
    import torch

    from qvggt_deploy.backends.trt.runner import SplitTrtRunner
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.trt.split import export_split

    model = build_model(get_preset("micro").replace(enable_track=False))
    _, agg, heads = export_split(model, tmp_path, 56, 56)
    profile = parse_profile(profile_doc)
    B.build_engine(agg, profile, tmp_path / "a.engine")
    B.build_engine(heads, profile, tmp_path / "h.engine")
    from qvggt_deploy.backends.trt.loader import EngineFromPath

    images = torch.rand(3, 3, 56, 56)
    with SplitTrtRunner(EngineFromPath(tmp_path / "a.engine", check_sidecar=False),
                        EngineFromPath(tmp_path / "h.engine", check_sidecar=False)) as runner:
        out = runner.infer({"images": images.numpy()})
    with torch.no_grad():
        ref = model(images)
    np.testing.assert_allclose(out["depth"], ref["depth"].numpy(), rtol=1e-3, atol=1e-4)
