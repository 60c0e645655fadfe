"""All metric families for one prediction against one ground truth, as a flat dict.

The prediction is VGGT's output dict (batch dim of 1 or none): ``pose_enc [S,9]`` (or
``extrinsics [S,3,4]`` + ``intrinsics [S,3,3]``), ``depth [S,H,W,1]``, ``world_points [S,H,W,3]``;
missing heads just skip their metrics. Keys (see each module for the formulas):

- camera (:mod:`.camera`): ``rre_deg``, ``rte_deg``, ``rra@5/15/30``, ``rta@5/15/30``, ``auc@30/15/5/3``
- depth (:mod:`.depth`): ``abs_rel``, ``delta_1.25`` (percent)
- points (:mod:`.points`): ``accuracy``, ``completeness``, ``chamfer`` for the point head and
  ``depthcam_*`` for depth unprojected with the predicted cameras
- consistency (:mod:`.consistency`): ``consistency`` (point head vs depth + cameras)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

from qvggt_deploy.geometry import pose_encoding_to_extri_intri, unproject_depth_map_to_point_map
from qvggt_deploy.metrics.camera import camera_metrics
from qvggt_deploy.metrics.consistency import consistency_metrics
from qvggt_deploy.metrics.depth import depth_metrics
from qvggt_deploy.metrics.points import point_metrics

# Which way is better, for tables and comparisons.
HIGHER_IS_BETTER = ("rra@", "rta@", "auc@", "delta_")


def higher_is_better(key: str) -> bool:
    return key.startswith(HIGHER_IS_BETTER)


def _unbatch(x: Any) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu()
    return x


def _ground_truth(gt: Any) -> Dict[str, torch.Tensor]:
    keys = ("depth", "mask", "extrinsics", "intrinsics", "world_points")
    if isinstance(gt, Mapping):
        return {k: torch.as_tensor(gt[k]) for k in keys}
    return {k: getattr(gt, k) for k in keys}


def predicted_cameras(pred: Mapping[str, Any], image_size_hw) -> Dict[str, torch.Tensor]:
    """``extrinsics [S,3,4]``, ``intrinsics [S,3,3]`` from a prediction (pose_enc or explicit)."""
    if "extrinsics" in pred and "intrinsics" in pred:
        E, K = _unbatch(pred["extrinsics"]), _unbatch(pred["intrinsics"])
        return {"extrinsics": E.reshape(-1, 3, 4), "intrinsics": K.reshape(-1, 3, 3)}
    if "pose_enc" not in pred:
        return {}
    enc = _unbatch(pred["pose_enc"]).double().reshape(-1, 9)
    E, K = pose_encoding_to_extri_intri(enc, image_size_hw)
    return {"extrinsics": E, "intrinsics": K}


def compute_metrics(pred: Mapping[str, Any], gt: Any, max_points: int = 5000, seed: int = 0,
                    depthcam: bool = True, max_dist: Optional[float] = None) -> Dict[str, float]:
    """Flat metric dict for one scene.

    Args:
        pred: model output (see module docstring).
        gt: a :class:`~qvggt_deploy.data.synthetic.Scene` or a dict with ``depth [S,H,W]``,
            ``mask``, ``extrinsics``, ``intrinsics``, ``world_points``.
        max_points: per-cloud points for Chamfer. Defaults to 5000.
        seed: Chamfer subsampling seed. Defaults to 0.
        depthcam: also score depth unprojected with the predicted cameras (``depthcam_*``) and
            the cross-head consistency. Defaults to True.
        max_dist: outlier cut-off of the point metrics (:func:`~.points.point_metrics`). Defaults to None.
    """
    g = _ground_truth(gt)
    S, H, W = g["depth"].shape
    out: Dict[str, float] = {}
    cams = predicted_cameras(pred, (H, W))
    if cams and S >= 2:
        out.update(camera_metrics(cams["extrinsics"], g["extrinsics"]))
    depth = _unbatch(pred["depth"]).reshape(S, H, W) if "depth" in pred else None
    if depth is not None:
        out.update(depth_metrics(depth, g["depth"], g["mask"]))
    if "world_points" in pred:
        pts = _unbatch(pred["world_points"]).reshape(S, H, W, 3)
        out.update(point_metrics(pts, g["world_points"], g["mask"], max_points=max_points, seed=seed,
                                   max_dist=max_dist))
    if depthcam and depth is not None and cams:
        pts_dc = unproject_depth_map_to_point_map(depth.double(), cams["extrinsics"], cams["intrinsics"])
        out.update(point_metrics(pts_dc, g["world_points"], g["mask"], max_points=max_points, seed=seed,
                                 prefix="depthcam_", max_dist=max_dist))
        if "world_points" in pred:
            out.update(consistency_metrics(depth, cams["extrinsics"], cams["intrinsics"],
                                           _unbatch(pred["world_points"]).reshape(S, H, W, 3), g["mask"]))
    return out
