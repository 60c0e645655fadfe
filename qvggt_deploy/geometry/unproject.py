"""Depth maps to camera and world points (VGGT's conventions).

Pixel (u, v) = (column, row) integer indices, NO +0.5 offset (as the official helper):
``X_cam = ((u - cx) d / fx, (v - cy) d / fy, d)``. World points use the closed-form inverse of
the camera-from-world extrinsic: ``X_world = R^T X_cam - R^T t``. Works in torch (differentiable,
used by losses and the cross-head consistency metric); numpy arrays are accepted and returned.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x


def closed_form_inverse_se3(extrinsics: ArrayLike) -> ArrayLike:
    """Invert ``[..., 3, 4]`` or ``[..., 4, 4]`` rigid transforms; returns ``[..., 4, 4]``."""
    is_numpy = isinstance(extrinsics, np.ndarray)
    E = _as_tensor(extrinsics)
    R, t = E[..., :3, :3], E[..., :3, 3:4]
    Rt = R.transpose(-1, -2)
    out = torch.zeros(E.shape[:-2] + (4, 4), dtype=E.dtype, device=E.device)
    out[..., :3, :3] = Rt
    out[..., :3, 3:4] = -Rt @ t
    out[..., 3, 3] = 1
    return out.numpy() if is_numpy else out


def depth_to_camera_points(depth: ArrayLike, intrinsics: ArrayLike) -> ArrayLike:
    """``depth [..., H, W]`` (a trailing singleton channel is accepted), ``intrinsics [..., 3, 3]``
    -> camera-frame points ``[..., H, W, 3]``."""
    is_numpy = isinstance(depth, np.ndarray)
    d, K = _as_tensor(depth), _as_tensor(intrinsics)
    if d.shape[-1] == 1 and d.dim() >= 3:
        d = d[..., 0]
    H, W = d.shape[-2:]
    u = torch.arange(W, dtype=d.dtype, device=d.device).view(1, W)
    v = torch.arange(H, dtype=d.dtype, device=d.device).view(H, 1)
    fx = K[..., 0, 0][..., None, None]
    fy = K[..., 1, 1][..., None, None]
    cx = K[..., 0, 2][..., None, None]
    cy = K[..., 1, 2][..., None, None]
    x = (u - cx) * d / fx
    y = (v - cy) * d / fy
    pts = torch.stack([x, y, d], dim=-1)
    return pts.numpy() if is_numpy else pts


def camera_to_world(points_cam: ArrayLike, extrinsics: ArrayLike) -> ArrayLike:
    """``points_cam [..., H, W, 3]`` in each camera's frame, ``extrinsics [..., 3, 4]``
    (camera-from-world) -> world points ``[..., H, W, 3]``."""
    is_numpy = isinstance(points_cam, np.ndarray)
    P, E = _as_tensor(points_cam), _as_tensor(extrinsics)
    R, t = E[..., :3, :3], E[..., :3, 3]
    Rt = R.transpose(-1, -2)
    # X_world = R^T (X_cam - t)
    out = torch.einsum("...ij,...hwj->...hwi", Rt, P - t[..., None, None, :])
    return out.numpy() if is_numpy else out


def unproject_depth_map_to_point_map(depth: ArrayLike, extrinsics: ArrayLike, intrinsics: ArrayLike) -> ArrayLike:
    """``depth [S, H, W(, 1)]``, ``extrinsics [S, 3, 4]``, ``intrinsics [S, 3, 3]`` -> world
    points ``[S, H, W, 3]`` (any leading batch dims work)."""
    return camera_to_world(depth_to_camera_points(depth, intrinsics), extrinsics)
