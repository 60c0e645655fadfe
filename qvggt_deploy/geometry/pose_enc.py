"""VGGT's 9-d pose encoding "absT_quaR_FoV" and its conversion to/from cameras.

``pose_enc = [t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h, fov_w]`` where ``[R | t]`` is the
camera-from-world extrinsic (OpenCV), the quaternion is scalar-last, ``fov_h`` is the vertical
field of view (from fy and the image height H) and ``fov_w`` the horizontal one (from fx, W), in
radians. Intrinsics have the principal point at the image centre and no skew. ``(H, W)`` is the
network input size, not the original photo size.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from qvggt_deploy.geometry.rotation import mat_to_quat, quat_to_mat


def extri_intri_to_pose_encoding(extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                                 image_size_hw: Sequence[int]) -> torch.Tensor:
    """``extrinsics [..., 3, 4]``, ``intrinsics [..., 3, 3]`` -> pose encoding ``[..., 9]``."""
    H, W = image_size_hw
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    quat = mat_to_quat(R)
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, quat, fov_h[..., None], fov_w[..., None]], dim=-1).float()


def pose_encoding_to_extri_intri(pose_enc: torch.Tensor, image_size_hw: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pose encoding ``[..., 9]`` -> (extrinsics ``[..., 3, 4]``, intrinsics ``[..., 3, 3]``)."""
    if pose_enc.shape[-1] != 9:
        raise ValueError(f"pose encoding must have 9 values in its last dimension, got {tuple(pose_enc.shape)}")
    H, W = image_size_hw
    t, quat, fov_h, fov_w = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7], pose_enc[..., 8]
    R = quat_to_mat(quat)
    extrinsics = torch.cat([R, t[..., None]], dim=-1)
    fy = (H / 2.0) / torch.tan(fov_h / 2.0)
    fx = (W / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics = torch.zeros(pose_enc.shape[:-1] + (3, 3), dtype=pose_enc.dtype, device=pose_enc.device)
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = W / 2
    intrinsics[..., 1, 2] = H / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics
