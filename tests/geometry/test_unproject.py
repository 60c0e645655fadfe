import numpy as np
import torch

from qvggt_deploy.geometry import closed_form_inverse_se3, depth_to_camera_points, unproject_depth_map_to_point_map


def test_camera_points_hand_computed_no_half_pixel_offset():
    depth = np.zeros((1, 2, 4), np.float32)
    depth[0, 1, 3] = 2.0
    K = np.array([[[2.0, 0, 1.0], [0, 4.0, 0.5], [0, 0, 1]]], np.float32)
    pts = depth_to_camera_points(depth, K)
    assert pts.shape == (1, 2, 4, 3)
    # u=3, v=1: X = (3-1)*2/2 = 2, Y = (1-0.5)*2/4 = 0.25, Z = 2
    assert np.allclose(pts[0, 1, 3], [2.0, 0.25, 2.0])


def test_world_points_with_rotation_and_translation():
    depth = np.full((1, 1, 1, 1), 5.0, np.float32)  # trailing channel accepted
    K = np.array([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1]]], np.float32)
    Rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32)  # camera-from-world rotation
    t = np.array([1.0, 2.0, 3.0], np.float32)
    E = np.concatenate([Rz, t[:, None]], axis=1)[None]
    world = unproject_depth_map_to_point_map(depth, E, K)
    X_cam = np.array([0.0, 0.0, 5.0])
    assert np.allclose(world[0, 0, 0], Rz.T @ (X_cam - t), atol=1e-6)
    # and mapping back with the extrinsic gives the camera point
    assert np.allclose(Rz @ world[0, 0, 0] + t, X_cam, atol=1e-6)


def test_closed_form_inverse():
    R, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    E = torch.cat([R, torch.randn(3, 1, dtype=torch.float64)], dim=1)
    inv = closed_form_inverse_se3(E)
    full = torch.eye(4, dtype=torch.float64)
    full[:3] = E
    assert torch.allclose(inv @ full, torch.eye(4, dtype=torch.float64), atol=1e-12)
