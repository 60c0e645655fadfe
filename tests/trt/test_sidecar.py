import json

import onnx
import pytest
from onnx import TensorProto, helper

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.trt import sidecar as S
from qvggt_deploy.trt.profiles import parse_profile


def _onnx(path, digest="0123456789abcdef"):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["frames", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["frames", 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y]))
    if digest:
        helper.set_model_props(model, {"qvggt.recipe_digest": digest, "qvggt.preset": "micro"})
    onnx.save(model, str(path))
    return path


def _doc(tmp_path, profile_doc, **kwargs):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"not really a plan")
    plugin = tmp_path / "libplugin.so"
    plugin.write_bytes(b"\x7fELF")
    doc = S.make_sidecar(engine_path=engine, onnx_path=_onnx(tmp_path / "m.onnx"),
                         profile=parse_profile(profile_doc).to_dict(), plan={"split": False},
                         tensorrt_version="10.3.0", device={"name": "Orin", "compute_capability": [8, 7]},
                         cuda={"driver": 12060, "runtime": 12060}, plugin_library=plugin, build_seconds=12.345,
                         **kwargs)
    return engine, doc


def test_roundtrip(tmp_path, profile_doc):
    engine, doc = _doc(tmp_path, profile_doc)
    path = S.write_sidecar(engine, doc)
    assert path == tmp_path / "e.engine.json"
    back = S.read_sidecar(engine, required=True)
    assert back == json.loads(json.dumps(doc))
    assert back["recipe_digest"] == "0123456789abcdef"
    assert back["tensorrt"] == "10.3.0" and back["cuda"]["runtime"] == 12060
    assert back["profile"]["frames"] == {"min": 1, "opt": 2, "max": 4}
    assert back["plugin"]["sha256"] and back["engine"]["bytes"] == len(b"not really a plan")
    assert back["build"]["seconds"] == 12.35
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_float_export_has_no_digest(tmp_path):
    assert S.recipe_digest(S.onnx_metadata(_onnx(tmp_path / "f.onnx", digest=None))) is None


def test_compatibility(tmp_path, profile_doc):
    engine, doc = _doc(tmp_path, profile_doc)
    S.check_compatible(doc, tensorrt_version="10.3.0", compute_capability=(8, 7), engine_path=engine)
    with pytest.raises(QvggtError, match="built with TensorRT 10.3.0, this is TensorRT 10.4.0"):
        S.check_compatible(doc, tensorrt_version="10.4.0")
    with pytest.raises(QvggtError, match="built for sm_87, this GPU is sm_89"):
        S.check_compatible(doc, compute_capability=(8, 9))
    engine.write_bytes(b"changed")
    with pytest.raises(QvggtError, match="does not match its sidecar"):
        S.check_compatible(doc, engine_path=engine)
    profile_doc["builder"]["version_compatible"] = True
    _, doc = _doc(tmp_path, profile_doc)
    S.check_compatible(doc, tensorrt_version="10.4.0")  # version-compatible engines may move


def test_read_errors(tmp_path):
    engine = tmp_path / "x.engine"
    assert S.read_sidecar(engine) is None
    with pytest.raises(QvggtError, match="missing"):
        S.read_sidecar(engine, required=True)
    S.sidecar_path(engine).write_text("{")
    with pytest.raises(QvggtError, match="unreadable sidecar"):
        S.read_sidecar(engine)
    S.sidecar_path(engine).write_text(json.dumps({"format": "other"}))
    with pytest.raises(QvggtError, match="not a qvggt engine sidecar"):
        S.read_sidecar(engine)
    S.sidecar_path(engine).write_text(json.dumps({"format": S.FORMAT, "version": 99}))
    with pytest.raises(QvggtError, match="sidecar version 99"):
        S.read_sidecar(engine)
