import numpy as np
import pytest
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.comparator import Comparator

from qvggt_deploy.backends import get_backend
from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.backends.onnxrt.loader import QDQ_ACCURACY_KEY, SessionFromOnnx
from qvggt_deploy.errors import QvggtError
from tests.micro_exports import H, W


def test_loader_sets_the_qdq_accuracy_level_explicitly(exports):
    result, _, _ = exports("fp32")
    loader = SessionFromOnnx(result.path, accuracy_level=0, threads=1)
    assert loader.options().get_session_config_entry(QDQ_ACCURACY_KEY) == "0"
    assert SessionFromOnnx(result.path, accuracy_level=4).options().get_session_config_entry(QDQ_ACCURACY_KEY) == "4"


def test_runner_is_a_polygraphy_runner_and_matches_torch(exports, images):
    result, ref, _ = exports("fp32")
    OrtRunner = get_backend("ort")
    assert issubclass(OrtRunner, BaseRunner)
    with OrtRunner(SessionFromOnnx(result.path), name="ort-fp32") as runner:
        out = runner.infer({"images": images.numpy()})
        assert list(out) == list(OUTPUT_NAMES) and runner.last_inference_time() > 0
    with torch.no_grad():
        want = ref(images)
    for k in OUTPUT_NAMES:
        np.testing.assert_allclose(out[k], want[k].numpy(), rtol=1e-4, atol=1e-5)


def test_comparator_runs_it(exports, images):
    result, _, _ = exports("fp32")
    OrtRunner = get_backend("ort")
    runs = Comparator.run([OrtRunner(SessionFromOnnx(result.path), name="a")], data_loader=[{"images": images.numpy()}])
    assert list(runs.keys()) == ["a"]


@pytest.mark.parametrize("shape,match", [
    ((2, 3, H, W + 14), "exported for"),
    ((2, 4, H, W), r"\[S, 3, H, W\]"),
    ((3, H, W), r"\[S, 3, H, W\]"),
])
def test_wrong_input_shapes_are_clear_errors(exports, shape, match):
    result, _, _ = exports("fp32")
    with get_backend("ort")(SessionFromOnnx(result.path)) as runner:
        with pytest.raises(QvggtError, match=match):
            runner.infer({"images": np.zeros(shape, np.float32)})
        with pytest.raises(QvggtError, match="no input 'images'"):
            runner.infer({"x": np.zeros((1, 3, H, W), np.float32)})


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(QvggtError, match="not found"):
        SessionFromOnnx(tmp_path / "missing.onnx")()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(QvggtError, match="cannot load"):
        SessionFromOnnx(bad)()


def test_truncated_external_data_is_a_clear_error(exports, tmp_path):
    result, _, _ = exports("w4a16-int8-ext")
    model = tmp_path / result.path.name
    model.write_bytes(result.path.read_bytes())
    (tmp_path / result.data_path.name).write_bytes(result.data_path.read_bytes()[:1000])
    with pytest.raises(QvggtError, match="cannot load"):
        SessionFromOnnx(model)()


def test_loader_options_are_validated(exports):
    result, _, _ = exports("fp32")
    with pytest.raises(QvggtError, match="arena_extend"):
        SessionFromOnnx(result.path, arena_extend="doubling")
    with pytest.raises(QvggtError, match="optimization"):
        SessionFromOnnx(result.path, optimization="max")
    with pytest.raises(QvggtError, match="accuracy level"):
        SessionFromOnnx(result.path, accuracy_level=5)
