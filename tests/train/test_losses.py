import pytest
import torch

from qvggt_deploy.train.data import get_curriculum, make_batch
from qvggt_deploy.geometry import pose_encoding_to_extri_intri
from qvggt_deploy.geometry.rotation import quat_to_mat
from qvggt_deploy.metrics.camera import relative_pose_errors, rotation_angle_error
from qvggt_deploy.train.losses import (camera_loss, confidence_regression_loss, geodesic_rotation_loss,
                                       normalize_ground_truth, relative_rotation_loss,
                                       translation_direction_loss, vggt_loss)


@pytest.fixture(scope="module")
def gt():
    phase = get_curriculum("default")[1]
    return normalize_ground_truth(make_batch(0, 3, phase, 56))


def test_normalised_points_have_unit_mean_distance(gt):
    dist = gt["world_points"].norm(dim=-1)
    for b in range(dist.shape[0]):
        assert dist[b][gt["mask"][b]].mean() == pytest.approx(1.0, rel=1e-5)
    first = gt["pose_enc"][:, 0]
    assert torch.allclose(first[:, :7], torch.tensor([0, 0, 0, 0, 0, 0, 1.0]).expand_as(first[:, :7]), atol=1e-6)
    assert (gt["scale"] > 0).all()


def test_perfect_prediction_leaves_only_the_confidence_term(gt):
    B, S, H, W = gt["depth"].shape
    conf = torch.full((B, S, H, W), 2.0)
    pred = {"pose_enc_list": [gt["pose_enc"]] * 3, "depth": gt["depth"][..., None], "depth_conf": conf,
            "world_points": gt["world_points"], "world_points_conf": conf}
    out = vggt_loss(pred, gt)
    assert out["loss_camera"] == 0 and out["depth_l1"] == 0 and out["point_l1"] == 0
    log_term = -0.2 * torch.log(torch.tensor(2.0))
    assert out["loss_depth"] == pytest.approx(float(log_term), abs=1e-6)


def test_confidence_weighting_and_masking():
    target = torch.zeros(1, 1, 2, 2, 1)
    pred = torch.tensor([1.0, 1.0, 1.0, 100.0]).view(1, 1, 2, 2, 1)
    mask = torch.tensor([True, True, True, False]).view(1, 1, 2, 2)
    conf = torch.full((1, 1, 2, 2), 3.0)
    out = confidence_regression_loss(pred, conf, target, mask, alpha=0.0, grad_weight=0.0)
    assert out["loss"] == pytest.approx(3.0) and out["l1"] == pytest.approx(1.0)


def test_camera_loss_weights_later_iterations_more():
    gt = torch.zeros(1, 2, 9)
    off = torch.ones(1, 2, 9)
    early_wrong = camera_loss([off, gt], gt)["loss_camera"]
    late_wrong = camera_loss([gt, off], gt)["loss_camera"]
    assert late_wrong > early_wrong > 0


def _official_pair_errors(pred_pose_enc, gt_pose_enc):
    """RRE and RTE (degrees) of every pair of every sample, by the evaluation's own metric."""
    errors = [relative_pose_errors(pose_encoding_to_extri_intri(p.detach(), (56, 56))[0],
                                   pose_encoding_to_extri_intri(g, (56, 56))[0])
              for p, g in zip(pred_pose_enc, gt_pose_enc)]
    return torch.cat([e[0] for e in errors]), torch.cat([e[1] for e in errors])


def test_translation_direction_loss_scores_the_axis_only(gt):
    true = gt["pose_enc"]
    assert float(translation_direction_loss(true, true)) == pytest.approx(0.0, abs=1e-6)
    # Every translation scaled (even by a negative factor) keeps each pair's axis: still zero.
    flipped = true.clone()
    flipped[..., :3] *= -3.0
    assert float(translation_direction_loss(flipped, true)) == pytest.approx(0.0, abs=1e-6)
    # A wrong prediction: the loss is 1 - cos of the official RTE of every pair, averaged.
    wrong = true.clone()
    wrong[..., :3] += torch.tensor([0.3, -0.2, 0.1])[None, None] * torch.arange(true.shape[1])[None, :, None]
    wrong.requires_grad_(True)
    loss = translation_direction_loss(wrong, true)
    _, rte = _official_pair_errors(wrong, true)
    assert float(loss) == pytest.approx(float((1 - torch.cos(torch.deg2rad(rte))).mean()), abs=1e-4)
    loss.backward()
    assert wrong.grad[..., :3].abs().sum() > 0


def test_relative_rotation_loss_is_the_official_rre_of_every_pair(gt):
    true = gt["pose_enc"]
    assert float(relative_rotation_loss(true, true)) == pytest.approx(0.0, abs=1e-6)
    wrong = true.clone()
    wrong[..., 3:7] += torch.tensor([0.05, -0.1, 0.02, 0.0])[None, None] * torch.arange(true.shape[1])[None, :, None]
    wrong.requires_grad_(True)
    loss = relative_rotation_loss(wrong, true)
    rre, _ = _official_pair_errors(wrong, true)
    assert float(rre.max()) > 1.0
    assert float(loss) == pytest.approx(float(torch.sin(torch.deg2rad(rre) / 2).pow(2).mean()), abs=1e-4)
    loss.backward()
    assert wrong.grad[..., 3:7].abs().sum() > 0


def test_pair_losses_need_two_frames():
    one = torch.randn(2, 1, 9)
    assert float(translation_direction_loss(one, one + 1)) == 0.0
    assert float(relative_rotation_loss(one, one + 1)) == 0.0


def test_geodesic_rotation_loss_is_the_rotation_angle_free_of_quaternion_scale_and_sign(gt):
    true = gt["pose_enc"][..., 3:7]
    # Scaling or negating the raw prediction is the same rotation: no loss.
    assert float(geodesic_rotation_loss(-2.5 * true, true)) == pytest.approx(0.0, abs=1e-6)
    wrong = (true + torch.tensor([0.1, -0.05, 0.08, 0.0])).requires_grad_(True)
    loss = geodesic_rotation_loss(wrong, true)
    angle = rotation_angle_error(quat_to_mat(wrong.detach()).reshape(-1, 3, 3), quat_to_mat(true).reshape(-1, 3, 3))
    assert float(angle.min()) > 1.0
    assert float(loss) == pytest.approx(float(torch.sin(torch.deg2rad(angle) / 2).pow(2).mean()), abs=1e-4)
    loss.backward()
    assert wrong.grad.abs().sum() > 0


def test_camera_loss_rotation_choice_changes_only_the_rotation_part(gt):
    true = gt["pose_enc"]
    scaled = true.clone()
    scaled[..., 3:7] *= 2.0  # the same rotations, different raw components
    huber = camera_loss([scaled], true)
    geodesic = camera_loss([scaled], true, rotation="geodesic", weight_rotation=10.0)
    assert float(huber["cam_r"]) > 0.1 and float(geodesic["cam_r"]) == pytest.approx(0.0, abs=1e-6)
    assert float(geodesic["cam_t"]) == float(huber["cam_t"])
    with pytest.raises(ValueError, match="rotation loss"):
        camera_loss([true], true, rotation="l2")
