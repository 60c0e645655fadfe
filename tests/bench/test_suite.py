"""bench/suite: the variants of the options, checked before anything is timed."""
from pathlib import Path

import pytest

from qvggt_deploy.bench.suite import BenchOptions, report_paths, settings, variants
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model.checkpoint import ModelSource


def test_torch_variants_are_the_float_model_and_one_per_recipe():
    opts = BenchOptions("torch", recipes=[("w4", Path("r/w4"))], model=ModelSource("micro"), height=42)
    got = variants(opts)
    assert [v.label for v in got] == ["torch-fp32", "torch-w4"]
    assert got[1].recipe == "r/w4" and (got[0].height, got[0].width) == (42, 56)  # width: the preset's size
    assert settings(opts)["recipes"] == ["w4=r/w4"] and settings(opts)["model"]["preset"] == "micro"


@pytest.mark.parametrize("changes, message", [
    ({"backend": "torch", "interleave": True}, "--interleave is for --backend ort"),
    ({"backend": "torch", "models": [("a", Path("a.onnx"))]}, "--model is for --backend ort"),
    ({"backend": "ort", "recipes": [("a", Path("r"))]}, "--recipe is for --backend torch"),
    ({"backend": "ort"}, "nothing to benchmark"),
    ({"backend": "ort", "engines": [("e", Path("e.engine"))]}, "--engine is for --backend trt"),
    ({"backend": "ort", "models": [("a", Path("missing.onnx"))]}, "file not found"),
])
def test_options_are_refused_before_any_timing(changes, message):
    with pytest.raises(QvggtError, match=message):
        variants(BenchOptions(**changes))


def test_option_ranges_and_report_names():
    with pytest.raises(QvggtError, match="--runs"):
        BenchOptions("ort", runs=0)
    with pytest.raises(QvggtError, match="unknown bench backend"):
        BenchOptions("tvm")
    assert [p.name for p in report_paths("x")] == ["bench.json", "bench.md", "bench.png"]
