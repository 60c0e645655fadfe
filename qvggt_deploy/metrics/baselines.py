"""Trivial predictions that every trained model must beat, built from the ground truth itself.

``trivial``: depth = the median valid ground-truth depth of the first frame, everywhere and in
every frame; cameras = identity extrinsics for every frame (all cameras identical) with the
true intrinsics; point map = that depth unprojected with those cameras (S overlapping
fronto-parallel planes). Its camera errors are the true relative rotations, and 90 degrees of
translation error per pair (a zero translation has no direction).
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import torch

from qvggt_deploy.geometry import extri_intri_to_pose_encoding, unproject_depth_map_to_point_map

BASELINE_DESCRIPTIONS = {
    "trivial": "depth = median valid GT depth of frame 0 everywhere; extrinsics = identity for every "
               "frame with the true intrinsics; points = that depth unprojected with those cameras",
}


def trivial_prediction(scene: Any) -> Dict[str, torch.Tensor]:
    """The ``trivial`` baseline for one scene, in the model's output format (batch dim 1)."""
    depth_gt, mask, K = scene.depth, scene.mask, scene.intrinsics
    S, H, W = depth_gt.shape
    first = depth_gt[0][mask[0]]
    value = first.median() if first.numel() else depth_gt[mask].median() if mask.any() else torch.tensor(1.0)
    depth = torch.full((S, H, W), float(value))
    extr = torch.eye(4)[:3].expand(S, 3, 4).clone()
    points = unproject_depth_map_to_point_map(depth, extr, K)
    pose_enc = extri_intri_to_pose_encoding(extr, K, (H, W))
    return {"pose_enc": pose_enc[None], "depth": depth[None, ..., None], "world_points": points[None].float()}


BASELINES: Dict[str, Callable[[Any], Dict[str, torch.Tensor]]] = {"trivial": trivial_prediction}
