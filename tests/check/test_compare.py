import pytest

from qvggt_deploy.backends import get_backend
from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx
from qvggt_deploy.backends.torch.loader import ModelFromPreset
from qvggt_deploy.check.compare import Comparison, run_check
from qvggt_deploy.check.report import markdown
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.metrics.evaluate import eval_scenes
from tests.micro_exports import H, W


@pytest.fixture(scope="module")
def scenes():
    return list(eval_scenes(1, frames=2, image_size=(H, W)))


def runners(exports):
    fp32, _, _ = exports("fp32")
    w4, _, recipe = exports("w4a16")
    Torch, Ort = get_backend("torch"), get_backend("ort")
    return [Torch(ModelFromPreset("micro"), name="torch-fp32", height=H, width=W),
            Torch(ModelFromPreset("micro", recipe=recipe), name="torch-w4a16", height=H, width=W),
            Ort(SessionFromOnnx(fp32.path), name="ort-fp32"),
            Ort(SessionFromOnnx(w4.path), name="ort-w4a16")]


def test_exact_pairs_pass_and_metrics_agree(exports, scenes):
    comps = [Comparison("ort-fp32", "torch-fp32"), Comparison("ort-w4a16", "torch-w4a16"),
             Comparison("ort-w4a16", "torch-fp32", "approx")]
    result = run_check(runners(exports), [{"images": s.images.numpy()} for s in scenes], comps, ground_truth=scenes,
                       agree=[("ort-w4a16", "torch-w4a16")])
    assert result, markdown(result)
    exact = result.pairs[1]
    assert all(s.passed and s.max_abs < 1e-4 for s in exact.outputs.values())
    approx = result.pairs[2]
    assert approx.passed is None and approx.outputs["depth"].max_abs > 0  # quantization is visible
    assert {"auc@30", "abs_rel", "chamfer"} <= set(approx.metrics_vs_reference)
    gt = result.metrics_vs_ground_truth
    assert set(gt) == {"torch-fp32", "torch-w4a16", "ort-fp32", "ort-w4a16"}
    assert result.agreement and all(a["passed"] for a in result.agreement)
    assert abs(gt["ort-w4a16"]["abs_rel"] - gt["torch-w4a16"]["abs_rel"]) < 1e-5
    doc = result.to_dict()
    assert doc["passed"] is True and doc["comparisons"][0]["outputs"]["depth"]["passed"] is True
    priors = doc["camera_priors_vs_ground_truth"]
    assert set(priors) == {"identity", "forward", "mean_trajectory"}
    assert priors["identity"]["rte_deg"] == pytest.approx(90.0) and priors["forward"]["rte_deg"] < 90
    assert "Camera priors" in markdown(result)


def test_a_real_difference_fails_the_check(exports, scenes):
    comps = [Comparison("ort-w4a16", "torch-fp32")]  # quantized vs float, gated as exact: must fail
    result = run_check(runners(exports), [{"images": scenes[0].images.numpy()}], comps)
    assert not result
    assert "**FAILED**" in markdown(result)


def test_bad_comparisons(exports):
    with pytest.raises(QvggtError, match="not among"):
        run_check(runners(exports), [], [Comparison("ort-x", "torch-fp32")])
    with pytest.raises(QvggtError, match="exact or approx"):
        Comparison("a", "b", "roughly")
