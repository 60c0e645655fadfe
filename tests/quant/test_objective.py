"""The task loss on planted predictions: each head term sees its own head, and the consistency
term sees per-pixel changes of the cross-head error that leave its mean unchanged."""
from __future__ import annotations

import pytest
import torch

from qvggt_deploy.geometry import pose_encoding_to_extri_intri, unproject_depth_map_to_point_map
from qvggt_deploy.quant.objective import TaskWeights, head_losses, inconsistency_map, reference, task_loss

B, S, H, W = 1, 2, 6, 8


def _scene(seed: int = 0):
    """FP32-like predictions whose point map is the unprojected depth plus a per-pixel offset along
    x, so the cross-head error ``e`` at each pixel is exactly that offset's size."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.zeros(B, S, 9)
    pose[..., 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # identity rotation (x, y, z, w)
    pose[:, 1, :3] = torch.tensor([0.3, -0.1, 0.05])
    pose[..., 7:] = 1.0  # FoV in radians
    depth = 1.0 + torch.rand(B, S, H, W, 1, generator=g)
    offset = 0.01 + 0.05 * torch.rand(B, S, H, W, generator=g)
    return {"pose_enc": pose, "depth": depth, "world_points": _points(pose, depth, offset)}


def _points(pose, depth, offset):
    ext, intr = pose_encoding_to_extri_intri(pose, (H, W))
    unprojected = unproject_depth_map_to_point_map(depth[..., 0], ext, intr)
    return unprojected + torch.stack([offset, torch.zeros_like(offset), torch.zeros_like(offset)], dim=-1)


def test_inconsistency_map_is_per_pixel():
    fp = _scene()
    e = inconsistency_map(fp)
    assert e.shape == (B, S, H, W)
    ext, intr = pose_encoding_to_extri_intri(fp["pose_enc"], (H, W))
    expected = (unproject_depth_map_to_point_map(fp["depth"][..., 0], ext, intr) - fp["world_points"]).norm(dim=-1)
    torch.testing.assert_close(e, expected)


def test_inconsistency_map_of_a_frame_prefix_uses_those_frames_cameras():
    """Maps of the first frames only (the calibration stream's ``dense_frames``) with every frame's
    camera: the prefix of the full map."""
    fp = _scene()
    prefix = {"pose_enc": fp["pose_enc"], "depth": fp["depth"][:, :1], "world_points": fp["world_points"][:, :1]}
    torch.testing.assert_close(inconsistency_map(prefix), inconsistency_map(fp)[:, :1])
    moved = _scene(1)  # frame 1 moved: a prefix of frame 0 must not read frame 1's camera
    moved["pose_enc"][:, 1, :3] += 1.0
    torch.testing.assert_close(inconsistency_map({**prefix, "pose_enc": moved["pose_enc"]}),
                               inconsistency_map(prefix))


def test_fp32_against_itself_is_zero():
    fp = _scene()
    losses = head_losses(fp, reference([fp])[0])
    assert set(losses) == {"camera", "depth", "points", "consistency"}
    assert all(v == 0.0 for v in losses.values())


def test_consistency_sees_a_change_that_keeps_the_mean():
    fp = _scene()
    ref = reference([fp])[0]
    e = inconsistency_map(fp)
    # half the pixels more consistent, the other half less, by the same amount: mean unchanged
    sign = torch.ones_like(e)
    sign.view(-1)[::2] = -1.0
    moved = e + 0.005 * sign
    q = dict(fp, world_points=_points(fp["pose_enc"], fp["depth"], moved))
    assert float(inconsistency_map(q).mean()) == pytest.approx(float(e.mean()), abs=1e-6)
    losses = head_losses(q, ref)
    assert losses["consistency"] == pytest.approx(0.005 / float(ref["_scale"]), rel=1e-3)
    assert losses["consistency"] > 0


@pytest.mark.parametrize("delta", [-0.005, 0.005])
def test_consistency_counts_improvement_and_degradation_alike(delta):
    fp = _scene()
    ref = reference([fp])[0]
    q = dict(fp, world_points=_points(fp["pose_enc"], fp["depth"], inconsistency_map(fp) + delta))
    assert head_losses(q, ref)["consistency"] == pytest.approx(0.005 / float(ref["_scale"]), rel=1e-3)


def test_heads_moving_together_are_consistent():
    """Depth changed and the point map following it: depth and points terms see it, consistency
    does not (the heads still agree as much as FP32's do)."""
    fp = _scene()
    ref = reference([fp])[0]
    depth = fp["depth"] * 1.1
    q = dict(fp, depth=depth, world_points=_points(fp["pose_enc"], depth, inconsistency_map(fp)))
    losses = head_losses(q, ref)
    assert losses["depth"] == pytest.approx(float(torch.log(torch.tensor(1.1))), rel=1e-4)
    assert losses["points"] > 0.01
    assert losses["consistency"] < 1e-5


def test_camera_term_and_weights():
    fp = _scene()
    refs = reference([fp, _scene(1)])
    cam = dict(fp, pose_enc=fp["pose_enc"] + 0.02)  # cameras moved, depth and points kept: inconsistent
    out = task_loss([cam, refs[1]], refs, TaskWeights(camera=1.0, depth=0.0, points=0.0, consistency=0.0))
    assert out["camera"] == pytest.approx(0.02 / 2, rel=1e-4)  # one of the two scenes moved
    assert out["depth"] == 0.0 and out["points"] == 0.0
    assert out["consistency"] > 0
    assert out["task"] == pytest.approx(out["camera"])
    weighted = task_loss([cam, refs[1]], refs, TaskWeights(camera=2.0, consistency=0.5))
    assert weighted["task"] == pytest.approx(2 * out["camera"] + 0.5 * out["consistency"])


def test_a_head_the_model_lacks_is_left_out():
    fp = _scene()
    ref = reference([fp])[0]
    losses = head_losses({"depth": fp["depth"]}, {"depth": ref["depth"]})
    assert set(losses) == {"depth"}
