"""Turning raw model outputs into cameras and confidence-filtered point clouds."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from qvggt_deploy.geometry.pose_enc import pose_encoding_to_extri_intri
from qvggt_deploy.geometry.unproject import unproject_depth_map_to_point_map


def cameras_from_pose_enc(pose_enc: torch.Tensor, image_size_hw) -> Tuple[np.ndarray, np.ndarray]:
    """``pose_enc [S, 9]`` (or ``[1, S, 9]``) -> (extrinsics ``[S, 3, 4]``, intrinsics ``[S, 3, 3]``)."""
    pose_enc = pose_enc.reshape(-1, 9).double()
    extrinsics, intrinsics = pose_encoding_to_extri_intri(pose_enc, image_size_hw)
    return extrinsics.float().numpy(), intrinsics.float().numpy()


def point_cloud(predictions: Dict[str, torch.Tensor], source: str = "depth",
                conf_percentile: float = 50.0) -> Tuple[np.ndarray, np.ndarray]:
    """Confidence-filtered colored points from one sequence's predictions.

    Args:
        predictions: model outputs with batch size 1 (``images``, ``pose_enc``, ``depth`` and
            ``depth_conf``, or ``world_points`` and ``world_points_conf``).
        source: ``depth`` (depth unprojected with the predicted cameras; usually more accurate,
            as the VGGT authors note) or ``pointmap`` (the point head).
        conf_percentile: drop the points whose confidence is below this percentile (0 keeps all).

    Returns:
        (points ``[M, 3]`` float32, colors ``[M, 3]`` uint8).
    """
    images = predictions["images"][0]  # [S, 3, H, W]
    H, W = images.shape[-2:]
    if source == "depth":
        extrinsics, intrinsics = cameras_from_pose_enc(predictions["pose_enc"][0], (H, W))
        depth = predictions["depth"][0].float().numpy()
        points = unproject_depth_map_to_point_map(depth, extrinsics, intrinsics)
        conf = predictions["depth_conf"][0].float().numpy()
    elif source == "pointmap":
        points = predictions["world_points"][0].float().numpy()
        conf = predictions["world_points_conf"][0].float().numpy()
    else:
        raise ValueError(f"point source must be 'depth' or 'pointmap', got {source!r}")
    colors = (images.permute(0, 2, 3, 1).float().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    points, conf, colors = points.reshape(-1, 3), conf.reshape(-1), colors.reshape(-1, 3)
    keep = np.isfinite(points).all(axis=1)
    if conf_percentile > 0:
        keep &= conf >= np.percentile(conf, conf_percentile)
    return points[keep].astype(np.float32), colors[keep]
