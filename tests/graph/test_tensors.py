import numpy as np
import onnx
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import TensorStore, pack_onnx_int4, read_array, unpack_onnx_int4


@pytest.mark.parametrize("shape", [(4, 6), (3, 5), (1,), (7, 3, 2)])
def test_int4_pack_round_trip_matches_onnx(shape):
    q = np.random.default_rng(0).integers(-8, 8, size=shape).astype(np.int8)
    raw = pack_onnx_int4(q)
    np.testing.assert_array_equal(unpack_onnx_int4(raw, shape), q)
    tensor = onnx.helper.make_tensor("t", onnx.TensorProto.INT4, list(shape), raw, raw=True)
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor).astype(np.int8), q)  # ONNX's own reading


def test_int4_packing_rejects_out_of_range():
    with pytest.raises(QvggtError, match="outside"):
        pack_onnx_int4(np.array([8], np.int8))
    with pytest.raises(QvggtError, match="bytes"):
        unpack_onnx_int4(b"\x00", (4,))


def test_external_store_writes_one_aligned_file(tmp_path):
    out = tmp_path / "m.onnx"
    store = TensorStore(out, external=True)
    big = np.arange(5000, dtype=np.float32).reshape(50, 100)
    c1 = store.add("big", big, stream=True)
    c2 = store.add_int4("q", np.full((64, 64), -3, np.int8))
    c3 = store.add("small", np.ones(3, np.float32))
    np.testing.assert_array_equal(read_array(c1), big)  # readable while building
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "small"], ["y"])], "g", [x], [y],
                                   [c._values.tensor for c in (c1, c2, c3)])
    store.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)]), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    model = onnx.load(str(out), load_external_data=False)
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["small"].data_location == onnx.TensorProto.DEFAULT  # tiny tensors stay inline
    for name in ("big", "q"):
        info = {e.key: e.value for e in inits[name].external_data}
        assert info["location"] == "m.onnx.data" and int(info["offset"]) % 4096 == 0
    np.testing.assert_array_equal(read_array(inits["big"], tmp_path), big)
    np.testing.assert_array_equal(read_array(inits["q"], tmp_path), np.full((64, 64), -3, np.int8))


def test_failed_store_leaves_nothing(tmp_path):
    store = TensorStore(tmp_path / "m.onnx", external=True)
    store.add("big", np.zeros(4096, np.float32), stream=True)
    store.close()
    assert not list(tmp_path.iterdir())


def _tiny_model(inits):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y], inits)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])


def test_inline_export_over_an_external_one_leaves_no_stale_data(tmp_path):
    out = tmp_path / "m.onnx"
    store = TensorStore(out, external=True)
    c = store.add("big", np.zeros((64, 64), np.float32), stream=True)
    store.save(_tiny_model([c._values.tensor]), out)
    assert (tmp_path / "m.onnx.data").exists()
    TensorStore(out, external=False).save(_tiny_model([]), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_failed_save_leaves_no_temporary_graph(tmp_path, monkeypatch):
    def boom(model, path, *a, **k):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", boom)
    with pytest.raises(OSError, match="disk full"):
        TensorStore(tmp_path / "m.onnx", external=False).save(_tiny_model([]), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
