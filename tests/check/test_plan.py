"""What ``qvggt check`` pairs with what, without running anything."""
import pytest

from qvggt_deploy.check.plan import plan_check
from qvggt_deploy.errors import QvggtError


def test_engines_are_also_compared_with_the_onnx_runtime_run_of_the_reference_file(exports, tmp_path):
    trt, _, recipe = exports("w4a16-trt")
    files = [("native", trt.path)]
    engines = [("plugin", tmp_path / "plugin.engine"), ("native", tmp_path / "native.engine")]
    plan = plan_check(files, engines, preset="micro", recipes={recipe.digest: recipe}, allow_random=True,
                      gates={"abs_rel": 0.05}, engine_reference="native")
    pairs = {(c.candidate, c.reference): c for c in plan.comparisons}
    for engine in ("trt-plugin", "trt-native"):
        assert pairs[(engine, "torch-fp32")].kind == "approx"
        assert pairs[(engine, "ort-native")].kind == "approx" and dict(pairs[(engine, "ort-native")].gates) == {"abs_rel": 0.05}
    without = plan_check(files, engines, preset="micro", recipes={recipe.digest: recipe}, allow_random=True)
    assert not [c for c in without.comparisons if c.reference == "ort-native"]


def test_an_unknown_engine_reference_is_one_sentence(exports):
    trt, _, recipe = exports("w4a16-trt")
    with pytest.raises(QvggtError, match="engine reference 'nope' is not the name of an --onnx file"):
        plan_check([("native", trt.path)], [("e", "e.engine")], preset="micro", recipes={recipe.digest: recipe},
                   engine_reference="nope")
