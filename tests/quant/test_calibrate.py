"""Calibration driver: methods, determinism, the recipe reproduces the calibrated model."""
import pytest
import torch

from qvggt_deploy.model import build_model
from qvggt_deploy.quant.calibrate import calibrate
from qvggt_deploy.quant.recipe import apply_recipe
from qvggt_deploy.quant.workstore import WorkStore
from tests.quant.conftest import fast_options


@pytest.mark.parametrize("method,changes", [("rtn", {}), ("awq", {}), ("qvggt", {}),
                                            ("qvggt", {"abits": 8}), ("awq", {"token_filter": True,
                                                                               "comp_directions": 0})])
def test_recipe_reproduces_calibrated_model(scenes, method, changes):
    model = build_model("micro", seed=0)
    recipe = calibrate(model, scenes, fast_options(method, **changes))
    fresh = apply_recipe(build_model("micro", seed=0), recipe)
    with torch.no_grad():
        for s in scenes:
            a, b = model(s), fresh(s)
            assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["pose_enc"], b["pose_enc"])
    assert recipe.layers["camera_head.embed_pose"].precision == "fp16"  # 9 inputs: no group fits
    if method != "rtn":
        assert recipe.extra["search"]
    if changes.get("token_filter") or method == "qvggt":
        comp = [recipe.compensation(n) for n in recipe.token_filter["layers"]]
        assert all(c.shape[0] == 2 * changes.get("comp_directions", 2) + 1 for c in comp)


def test_deterministic_for_a_seed(scenes):
    digests = {calibrate(build_model("micro", seed=0), scenes, fast_options("qvggt")).digest for _ in range(2)}
    assert len(digests) == 1


def test_plan_sets_unit_precisions(scenes):
    model = build_model("micro", seed=0)
    plan = {"aggregator.frame_blocks.0": "fp16", "aggregator.global_blocks.1": "w8a16"}
    recipe = calibrate(model, scenes, fast_options("awq"), plan=plan)
    assert recipe.layers["aggregator.frame_blocks.0.mlp.fc1"].precision == "fp16"
    assert recipe.layers["aggregator.global_blocks.1.attn.qkv"].precision == "w8a16"
    assert recipe.layers["aggregator.frame_blocks.1.attn.qkv"].precision == "w4a16"


class Interrupted(Exception):
    pass


def test_resume_from_work_store(scenes, tmp_path, monkeypatch):
    import qvggt_deploy.quant.calibrate as cal

    opts = fast_options("awq")
    full = calibrate(build_model("micro", seed=0), scenes, opts)
    real, calls, interrupt = cal.calibrate_unit, [], [True]

    def flaky(*args, **kwargs):
        calls.append(args[2].name)
        if len(calls) == 4 and interrupt and interrupt.pop():
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(cal, "calibrate_unit", flaky)
    with pytest.raises(Interrupted):
        calibrate(build_model("micro", seed=0), scenes, opts, work=WorkStore(tmp_path / "w", {"k": 1}))
    calls.clear()
    resumed = calibrate(build_model("micro", seed=0), scenes, opts, work=WorkStore(tmp_path / "w", {"k": 1}))
    assert calls[0] == "aggregator.global_blocks.0"  # vit.0, vit.1, frame.0 were reused
    assert resumed.digest == full.digest
    # another key clears the folder
    WorkStore(tmp_path / "w", {"k": 2})
    assert not list((tmp_path / "w").glob("*.safetensors"))
