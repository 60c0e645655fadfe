import math

import numpy as np
import pytest
import torch

from qvggt_deploy.metrics.camera import (accuracy_at, auc, camera_metrics, pair_indices, relative_pose_errors,
                                         translation_angle_error)


def _rot_y(deg):
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=torch.float64)


def _cams(rotations_deg, translations):
    return torch.stack([torch.cat([_rot_y(r), torch.tensor(t, dtype=torch.float64)[:, None]], 1)
                        for r, t in zip(rotations_deg, translations)])


GT = _cams([0, 20, -15, 40], [[0, 0, 0], [1, 0, 0.2], [-0.5, 0.1, 0], [0.3, 0.3, 1]])


def test_pairs():
    i, j = pair_indices(4)
    assert len(i) == 6 and (i < j).all()


def test_identical_cameras_are_perfect():
    m = camera_metrics(GT, GT)
    assert m["rre_deg"] < 1e-4 and m["rte_deg"] < 1e-4
    assert m["auc@30"] == pytest.approx(100) and m["rra@5"] == 100 and m["rta@5"] == 100


def test_known_rotation_error():
    pred = GT.clone()
    pred[1, :, :3] = _rot_y(10) @ GT[1, :, :3]  # extra 10 degrees on camera 1 (rotation only)
    pred[1, :, 3] = _rot_y(10) @ GT[1, :, 3]  # same camera centre
    rre, _ = relative_pose_errors(pred, GT)
    i, j = pair_indices(4)
    involved = (i == 1) | (j == 1)
    assert torch.allclose(rre[involved], torch.full_like(rre[involved], 10.0), atol=1e-6)
    assert (rre[~involved] < 1e-4).all()


def test_known_translation_angles():
    gt = torch.tensor([[1.0, 0, 0]] * 4)
    pred = torch.tensor([[1.0, 1, 0], [-2.0, 0, 0], [0.0, 0, 0], [0.0, 3, 0]])
    err = translation_angle_error(pred, gt)
    assert err.tolist() == pytest.approx([45, 0, 90, 90], abs=1e-4)  # sign-free; zero t -> 90


def test_auc_of_a_known_histogram():
    # max errors 0.5, 1.5, 2.5, 40 with tau = 3: P(e<1)=1/4, P(e<2)=2/4, P(e<=3)=3/4 -> mean 0.5
    assert auc([0.5, 0.2, 2.5, 40], [0.1, 1.5, 0.3, 1], max_threshold=3) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 40, size=1000)
    direct = np.mean([(e < t).mean() for t in range(1, 31)])
    assert auc(e, np.zeros_like(e), 30) == pytest.approx(direct, abs=2e-3)  # ties only at integers
    assert accuracy_at([1, 2, 3, 10], 3) == 0.5
