"""The pass plan of every target, without tracing."""
import numpy as np
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.export.options import ExportOptions
from qvggt_deploy.export.plan import DENSE_BANDS, PassInputs, plan_body_passes, plan_passes
from qvggt_deploy.passes import list_passes
from qvggt_deploy.passes.lower_linears import LinearLowering


def _lowering(int4=True, act=False, bypass=False):
    plan = {"head.fc": LinearLowering("fp32", 8, 8, weight=np.zeros((8, 8), np.float32))}
    if int4:
        plan["blocks.0.fc"] = LinearLowering("w4a8" if act else "w4a16", 64, 16, group=32, abits=8 if act else None,
                                             act_granularity="per_token" if act else None, special_bypass=bypass)
    return plan


def _inputs(**kw):
    base = dict(lowering=_lowering(), tokens_per_frame=21, num_special=5, token_rule_layers=["blocks.0.fc"])
    base.update(kw)
    return PassInputs(**base)


def names(steps):
    return [name for name, _ in steps]


HEAD = ["fold-constants", "dedupe-constants"]


@pytest.mark.parametrize("options,expected", [
    (dict(), HEAD + ["band-upsampled-convs", "lower-attention", "lower-linears", "int4-to-matmulnbits", "cleanup"]),
    (dict(ort_int4="qdq"), HEAD + ["band-upsampled-convs", "lower-attention", "lower-linears", "cleanup"]),
    (dict(ort_int8_activations=True), HEAD + ["band-upsampled-convs", "lower-attention", "lower-linears",
                                              "int4-to-qgemm", "int4-to-matmulnbits", "cleanup"]),
    (dict(ort_int8_activations=True, ort_int8_kernel="matmulnbits"),
     HEAD + ["band-upsampled-convs", "lower-attention", "lower-linears", "int4-to-matmulnbits", "cleanup"]),
    (dict(dense_loop=True), HEAD + ["loop-dense-heads", "lower-attention", "lower-linears", "int4-to-matmulnbits",
                                    "cleanup"]),
    (dict(target="trt"), HEAD + ["lower-attention", "lower-linears", "cleanup"]),
    (dict(target="trt", trt_plugin=True), HEAD + ["lower-attention", "lower-linears", "w4a16-plugin", "cleanup"]),
])
def test_plan_of_each_target(options, expected):
    steps = plan_passes(ExportOptions(height=56, width=56, **options), _inputs())
    assert names(steps) == expected
    assert set(names(steps)) <= set(list_passes())  # every planned pass is registered


def test_arguments_follow_the_options():
    inputs = _inputs(convs_rounded=True, store="store", constants={"c": 1})
    steps = dict(plan_passes(ExportOptions(height=56, width=56, ort_int8_activations=True,
                                           ort_int8_kernel="matmulnbits"), inputs))
    assert steps["fp16-conv-weights"]["prefixes"] == ("model.depth_head.", "model.point_head.")
    assert steps["band-upsampled-convs"] == {"bands": DENSE_BANDS}
    assert steps["lower-attention"] == {"fused": "ort"}
    assert steps["lower-linears"]["plan"] is inputs.lowering and steps["lower-linears"]["constants"] == {"c": 1}
    assert steps["int4-to-matmulnbits"] == {"accuracy_level": 4, "store": "store"}
    trt = dict(plan_passes(ExportOptions(height=56, width=56, target="trt"), inputs))
    assert trt["lower-attention"] == {"fused": None} and trt["lower-linears"]["target"] == "trt"


def test_float_plans_skip_the_int4_rewrites():
    for options in (dict(), dict(target="trt", trt_plugin=True), dict(ort_int8_activations=True)):
        steps = names(plan_passes(ExportOptions(height=56, width=56, **options), _inputs(lowering=_lowering(False))))
        assert not {"int4-to-matmulnbits", "int4-to-qgemm", "w4a16-plugin"} & set(steps)
    assert names(plan_passes(ExportOptions(height=14, width=14)))[-2:] == ["lower-linears", "cleanup"]


def test_special_tokens_and_calibration_steps():
    inputs = _inputs(lowering=_lowering(act=True, bypass=True), compensation={"blocks.0.fc": "rows"})
    steps = dict(plan_passes(ExportOptions(height=56, width=56, ort_int8_activations=True), inputs))
    assert steps["bypass-special-tokens"] == {"layers": ["blocks.0.fc"], "tokens_per_frame": 21, "num_special": 5}
    assert steps["int4-to-qgemm"]["special_layers"] == ["blocks.0.fc"]
    no_bypass = dict(plan_passes(ExportOptions(height=56, width=56, ort_int8_activations=True,
                                               ort_int8_special_bypass=False), inputs))
    assert no_bypass["int4-to-qgemm"]["special_layers"] == []
    calib = dict(plan_passes(ExportOptions(height=56, width=56, calibration_graph=True), inputs))
    assert calib["drop-filtered-tokens"]["compensation"] == {"blocks.0.fc": "rows"}


def test_body_plan():
    opts = ExportOptions(height=56, width=56, dense_loop=True)
    assert names(plan_body_passes(opts, _inputs())) == HEAD + ["cleanup"]
    assert names(plan_body_passes(opts, _inputs(convs_rounded=True))) == HEAD + ["fp16-conv-weights", "cleanup"]
    assert "fp16-conv-weights" not in names(plan_passes(opts, _inputs(convs_rounded=True)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(target="tensorflow"), "unknown target"),
    (dict(frames=0), "--frames must be at least 1"),
    (dict(height=0), "must be positive"),
    (dict(ort_int4="int2"), "--ort-int4 must be one of matmulnbits, qdq"),
    (dict(ort_int8_kernel="x"), "--ort-int8-kernel must be one of"),
    (dict(external_data="maybe"), "--external-data must be one of auto, always, never"),
    (dict(float_precision="bf16"), "--float-precision must be one of fp32, fp16"),
    (dict(ort_int8_activations=True, ort_int4="qdq"), "needs --ort-int4 matmulnbits"),
    (dict(target="trt", ort_int8_activations=True), "--target ort only"),
    (dict(trt_plugin=True), "--target trt only"),
    (dict(target="trt", dense_loop=True), "--dense-loop is for --target ort"),
    (dict(target="trt", calibration_graph=True), "--calibration-graph needs --target ort"),
])
def test_bad_options_are_refused_where_built(kwargs, match):
    with pytest.raises(QvggtError, match=match) as err:
        ExportOptions(**{"height": 56, "width": 56, **kwargs})
    assert "\n" not in str(err.value)


def test_model_dependent_checks():
    with pytest.raises(QvggtError, match="multiples of the patch size 14"):
        ExportOptions(height=50, width=56).check_model(14, has_recipe=False)
    with pytest.raises(QvggtError, match="calibration-graph needs"):
        ExportOptions(height=56, width=56, calibration_graph=True).check_model(14, has_recipe=False)
    ExportOptions(height=56, width=56, calibration_graph=True).check_model(14, has_recipe=True)
