import math

import pytest
import torch

from qvggt_deploy.metrics.points import mutual_nearest_distances, point_metrics, umeyama


def _rotation(axis_angle):
    a = torch.tensor(axis_angle, dtype=torch.float64)
    theta = a.norm()
    k = a / theta
    Kx = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(theta) * Kx + (1 - math.cos(theta)) * Kx @ Kx


def test_umeyama_undoes_a_known_similarity():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(200, 3, generator=g, dtype=torch.float64)
    R = _rotation([0.3, -1.1, 0.5])
    dst = 2.5 * src @ R.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    c, R_est, t = umeyama(src, dst)
    assert c == pytest.approx(2.5) and torch.allclose(R_est, R, atol=1e-9)
    assert torch.allclose(t, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=1e-9)
    assert torch.det(R_est) == pytest.approx(1.0)


def test_mutual_nearest_distances_equal_the_two_one_way_searches():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 3, generator=g), torch.randn(170, 3, generator=g) + 0.5
    to_b, to_a = mutual_nearest_distances(a, b, chunk=64)  # several chunks, a ragged last one
    assert torch.equal(to_b, torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").min(1).values)
    assert torch.equal(to_a, torch.cdist(b, a, compute_mode="donot_use_mm_for_euclid_dist").min(1).values)


def test_nearest_distances():
    d, _ = mutual_nearest_distances(torch.zeros(1, 3), torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0]]))
    assert d.tolist() == [1.0]


def test_aligned_prediction_scores_zero_and_metrics_are_seeded():
    g = torch.Generator().manual_seed(1)
    gt = torch.randn(2, 6, 7, 3, generator=g)
    mask = torch.rand(2, 6, 7, generator=g) > 0.2
    R = _rotation([0.0, 0.7, 0.1]).float()
    pred = 0.3 * gt @ R.T - 4.0  # any similarity of the truth
    m = point_metrics(pred, gt, mask)
    assert m["chamfer"] < 1e-5 and m["accuracy"] < 1e-5 and m["completeness"] < 1e-5
    noisy = pred + 0.05 * torch.randn(pred.shape, generator=g)
    a = point_metrics(noisy, gt, mask, max_points=30, seed=4, prefix="x_")
    assert a == point_metrics(noisy, gt, mask, max_points=30, seed=4, prefix="x_") and a["x_chamfer"] > 0
