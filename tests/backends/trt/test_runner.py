import numpy as np
import pytest

from qvggt_deploy.backends import get_backend
from qvggt_deploy.backends.trt.runner import Availability, SplitTrtRunner, TrtRunner, is_available
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import is_available as importable

HAS_TRT = importable("tensorrt")


def test_registry_gives_the_runner():
    assert get_backend("trt") is TrtRunner
    assert TrtRunner.is_available is is_available


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_missing_tensorrt_is_one_sentence():
    available = is_available()
    assert isinstance(available, Availability) and not available
    assert available.reason.startswith("tensorrt is not installed:")
    assert "pip install tensorrt" in available.reason and "--system-site-packages" in available.reason
    runner = TrtRunner([lambda: None])
    with pytest.raises(QvggtError) as info:
        runner.activate()
    assert str(info.value) == available.reason


def test_split_runner_takes_two_engines():
    runner = SplitTrtRunner("a.engine", "h.engine", name="split")
    assert runner._engines == ["a.engine", "h.engine"] and runner.name.startswith("split")


def test_engine_path_of_a_split_build_lists_both(tmp_path):
    import json

    from qvggt_deploy.backends.trt.runner import _engine_paths
    from qvggt_deploy.trt.sidecar import FORMAT, VERSION, sidecar_path

    out = tmp_path / "vggt.engine"
    sidecar_path(out).write_text(json.dumps({"format": FORMAT, "version": VERSION, "part": "split",
                                             "split": {"aggregator": "vggt.aggregator.engine",
                                                       "heads": "vggt.heads.engine"}}))
    assert _engine_paths(out) == [tmp_path / "vggt.aggregator.engine", tmp_path / "vggt.heads.engine"]
    assert _engine_paths(tmp_path / "other.engine") == [tmp_path / "other.engine"]


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed")
def test_runner_io_contract(tmp_path):
    """A float micro engine through TrtRunner has the common I/O names (needs a GPU + TensorRT)."""

    from qvggt_deploy.graph.io import OUTPUT_NAMES
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.trt.builder import build_engine
    from qvggt_deploy.trt.profiles import parse_profile
    from qvggt_deploy.trt.split import export_split

    model = build_model(get_preset("micro").replace(enable_track=False))
    _, agg, heads = export_split(model, tmp_path, 56, 56)
    profile = parse_profile({
        "name": "gpu-test", "device": {"memory_gib": 8.0, "unified_memory": False},
        "model": {"preset": "micro", "height": 56, "width": 56}, "frames": {"min": 1, "opt": 2, "max": 4},
        "builder": {"workspace_mib": 256, "optimization_level": 1}})
    build_engine(agg, profile, tmp_path / "a.engine")
    build_engine(heads, profile, tmp_path / "h.engine")
    from qvggt_deploy.backends.trt.loader import EngineFromPath

    with TrtRunner([EngineFromPath(tmp_path / "a.engine", check_sidecar=False),
                    EngineFromPath(tmp_path / "h.engine", check_sidecar=False)]) as runner:
        assert list(runner.get_input_metadata()) == ["images"]
        out = runner.infer({"images": np.random.rand(2, 3, 56, 56).astype(np.float32)})
        assert list(out) == list(OUTPUT_NAMES) and runner.last_inference_time() > 0
