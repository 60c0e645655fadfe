import onnx
import pytest
from onnx import TensorProto, helper

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.metadata import FORMAT, ExportMetadata, is_export, read_metadata


def _meta(**kw):
    base = dict(preset="micro", target="ort", height=56, width=42, tokens_per_frame=17, num_special=5,
                dense_loop=True, passes=("fold-constants", "lower-linears"), plan={"a.fc": "w4a16", "b.fc": "fp32"},
                recipe_digest="abc123", ort_int4="matmulnbits", ort_accuracy_level="0", ort_int8_kernel="none",
                extra={"profile": "p1"})
    base.update(kw)
    return ExportMetadata(**base)


def _onnx(path, props):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["y"])], "g", [x], [y]))
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


def test_round_trip_through_a_file(tmp_path):
    meta = _meta()
    path = _onnx(tmp_path / "m.onnx", {"other": "kept", **meta.to_props()})
    assert ExportMetadata.read(path) == meta
    strings = read_metadata(path)
    assert strings["format"] == FORMAT and strings["height"] == "56" and strings["dense_loop"] == "true"
    assert strings["passes"] == "fold-constants,lower-linears" and strings["profile"] == "p1"
    assert "other" not in strings and "ort_compute" not in strings  # unset fields are not written
    assert is_export(path) and ExportMetadata.read(path).size_hw == (56, 42)


def test_write_replaces_only_qvggt_keys(tmp_path):
    model = onnx.load(str(_onnx(tmp_path / "m.onnx", {"other": "kept", "qvggt.target": "trt"})))
    _meta().write(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["other"] == "kept" and props["qvggt.target"] == "ort"


def test_another_format_version_is_refused_in_one_sentence(tmp_path):
    props = {**_meta().to_props(), "qvggt.format": "qvggt-onnx/2"}
    path = _onnx(tmp_path / "m.onnx", props)
    for read in (read_metadata, ExportMetadata.read):
        with pytest.raises(QvggtError, match=r"metadata format 'qvggt-onnx/2'.*re-export") as err:
            read(path)
        assert "\n" not in str(err.value)


def test_files_without_a_format_tag_read_as_the_current_version(tmp_path):
    path = _onnx(tmp_path / "m.onnx", {"qvggt.preset": "micro", "qvggt.target": "trt", "qvggt.height": "28",
                                        "qvggt.width": "28", "qvggt.recipe_digest": "none"})
    meta = ExportMetadata.read(path)
    assert meta.format == FORMAT and meta.conv_precision == "fp32" and meta.passes == ()


def test_missing_or_bad_fields_name_the_key(tmp_path):
    assert not is_export(_onnx(tmp_path / "plain.onnx", {}))
    with pytest.raises(QvggtError, match=r"not a qvggt export \(metadata qvggt.preset missing\)"):
        ExportMetadata.read(tmp_path / "plain.onnx")
    bad = _onnx(tmp_path / "bad.onnx", {**_meta().to_props(), "qvggt.height": "tall"})
    with pytest.raises(QvggtError, match=r"bad qvggt.height metadata 'tall'"):
        ExportMetadata.read(bad)
