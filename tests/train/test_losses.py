import pytest
import torch

from qvggt_deploy.train.data import get_curriculum, make_batch
from qvggt_deploy.train.losses import camera_loss, confidence_regression_loss, normalize_ground_truth, vggt_loss


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
