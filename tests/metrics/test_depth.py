import pytest
import torch

from qvggt_deploy.metrics.depth import depth_metrics


def test_identical_and_scaled_depth_are_perfect():
    gt = torch.rand(2, 8, 9) + 0.5
    mask = torch.ones_like(gt, dtype=torch.bool)
    for pred in (gt, 3.7 * gt, (0.2 * gt)[..., None]):
        m = depth_metrics(pred, gt, mask)
        assert m["abs_rel"] == pytest.approx(0, abs=1e-6) and m["delta_1.25"] == 100


def test_known_values_after_median_scaling():
    gt = torch.tensor([[[1.0, 2.0, 4.0]]])
    pred = torch.tensor([[[1.0, 2.0, 2.0]]])  # medians 2 and 2: no rescale
    m = depth_metrics(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert m["abs_rel"] == pytest.approx(0.5 / 3)  # (0 + 0 + 2/4) / 3
    assert m["delta_1.25"] == pytest.approx(200 / 3)


def test_masked_pixels_are_ignored():
    gt = torch.ones(1, 2, 2)
    pred = torch.tensor([[[1.0, 1.0], [1.0, 50.0]]])
    mask = torch.tensor([[[True, True], [True, False]]])
    assert depth_metrics(pred, gt, mask)["abs_rel"] == 0
