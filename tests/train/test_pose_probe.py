import math

import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.model import build_model
from qvggt_deploy.train.pose_probe import (CENTRE_SCALE_M, AbsolutePoseProbe, CameraTokenTap, absolute_pose_loss,
                                           absolute_pose_target, camera_go_no_go)


def _extrinsic(yaw_deg: float, centre):
    a = math.radians(yaw_deg)
    R = torch.tensor([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    c = torch.tensor(centre, dtype=torch.float32)
    return torch.cat([R, -(R @ c)[:, None]], dim=1)


def test_target_holds_rotation_and_camera_centre():
    E = torch.stack([_extrinsic(0, [0, 1, 0]), _extrinsic(30, [1.5, 1, -3])])[None]
    target = absolute_pose_target(E)
    assert target.shape == (1, 2, 12)
    assert torch.allclose(target[0, 1, :9], E[0, 1, :, :3].flatten())
    assert torch.allclose(target[0, 1, 9:], torch.tensor([1.5, 1, -3]) / CENTRE_SCALE_M, atol=1e-6)
    assert absolute_pose_loss(target, E)["loss_abs_pose"] == 0
    assert absolute_pose_loss(target + 0.1, E)["loss_abs_pose"] > 0.09


def test_generated_scene_frames_agree_with_their_room_poses():
    scene = generate_scene(3, SceneConfig(frames=3, image_size=(28, 28)))
    E = scene.scene_extrinsics
    bottom = torch.tensor([[0, 0, 0, 1.0]]).expand(3, 1, 4)
    E4 = torch.cat([E.double(), bottom.double()], 1)
    rel = (E4 @ torch.linalg.inv(E4[0]))[:, :3]  # relative to frame 0 = the scene's extrinsics
    assert torch.allclose(rel.float(), scene.extrinsics, atol=1e-4)
    sub = scene.subset([2, 0])
    assert torch.equal(sub.scene_extrinsics, E[[2, 0]])


def test_tap_reads_the_camera_token_and_the_probe_maps_it():
    model = build_model("micro")
    tap = CameraTokenTap(model)
    with torch.no_grad():
        tokens_list, _ = model.aggregator(torch.rand(1, 2, 3, 56, 56))
    assert torch.equal(tap.tokens, tokens_list[-1][:, :, 0])
    tap.remove()
    assert AbsolutePoseProbe(tap.tokens.shape[-1])(tap.tokens).shape == (1, 2, 12)


def test_go_no_go_puts_the_model_beside_the_priors():
    model = build_model("micro").train()
    out = camera_go_no_go(model, num_scenes=2, frames=3, image_size=56)
    assert model.training  # restored
    assert set(out) >= {"heldout_rre_deg", "identity_rre_deg", "heldout_auc30", "best_prior_auc30"}
    assert out["identity_rre_deg"] > 0 and 0 <= out["best_prior_auc30"] <= 100
    assert out["attn_match_best"] > 0 and out["heldout_track_px_median"] >= 0  # micro has a track head
