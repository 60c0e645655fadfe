import math

import torch

from qvggt_deploy.geometry import (extri_intri_to_pose_encoding, mat_to_quat, pose_encoding_to_extri_intri,
                                   quat_to_mat)


def test_quat_to_mat_known_rotation_and_implicit_normalisation():
    s = math.sqrt(0.5)
    q = torch.tensor([0.0, 0.0, s, s])  # 90 degrees about z, XYZW
    R = quat_to_mat(q)
    assert torch.allclose(R, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), atol=1e-6)
    assert torch.allclose(quat_to_mat(3.0 * q), R, atol=1e-6)


def test_mat_to_quat_standardised_w_positive():
    q = torch.nn.functional.normalize(torch.randn(500, 4, dtype=torch.float64), dim=-1)
    q2 = mat_to_quat(quat_to_mat(q))
    assert (q2[:, 3] >= 0).all()
    q = torch.where(q[:, 3:] < 0, -q, q)
    assert torch.allclose(q, q2, atol=1e-9)


def test_pose_encoding_round_trip_and_fov_order():
    H, W = 210, 280
    R = quat_to_mat(torch.nn.functional.normalize(torch.randn(2, 5, 4, dtype=torch.float64), dim=-1))
    t = torch.randn(2, 5, 3, 1, dtype=torch.float64)
    E = torch.cat([R, t], dim=-1)
    K = torch.zeros(2, 5, 3, 3, dtype=torch.float64)
    K[..., 0, 0], K[..., 1, 1] = 300.0, 250.0
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = W / 2, H / 2, 1
    enc = extri_intri_to_pose_encoding(E, K, (H, W))
    assert enc.shape == (2, 5, 9)
    assert math.isclose(enc[0, 0, 7].item(), 2 * math.atan(H / 2 / 250.0), rel_tol=1e-6)  # vertical
    assert math.isclose(enc[0, 0, 8].item(), 2 * math.atan(W / 2 / 300.0), rel_tol=1e-6)  # horizontal
    E2, K2 = pose_encoding_to_extri_intri(enc.double(), (H, W))
    assert torch.allclose(E2, E, atol=1e-5)
    assert torch.allclose(K2, K, atol=1e-3)
