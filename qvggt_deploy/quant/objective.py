"""Task loss: how far a (partly) quantized model's heads are from the FP32 model's.

Measured on calibration scenes against the FP32 predictions, so no ground truth is needed (image
folders calibrate as well as generated scenes). Every term is scale-free:

- ``camera``: mean |pose_enc - pose_enc_fp32| over the 9 entries (translation in the first
  camera's normalised frame, quaternion, FoV in radians);
- ``depth``: mean |log depth - log depth_fp32| (a relative error);
- ``points``: mean ||p - p_fp32|| / mean ||p_fp32 - centroid||;
- ``consistency``: per-pixel change of the cross-head error: ``e = ||unproject(depth, cameras) -
  points||`` at every pixel (depth unprojected with the predicted cameras vs the point head), and
  the term is ``mean |e - e_fp32| / scale``. Per pixel, because two scalar means hide any change
  that keeps the mean (some pixels more consistent, others less); the change, not the value,
  because FP32 itself is not perfectly consistent. Both signs count: the target is FP32's
  geometry, and a pixel more consistent than FP32 got there by quantization noise, not skill.

``task = sum_h w_h * loss_h`` (:class:`TaskWeights`), averaged over scenes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import torch

from qvggt_deploy.geometry import pose_encoding_to_extri_intri, unproject_depth_map_to_point_map

@dataclass(frozen=True)
class TaskWeights:
    """Weights of the head terms. Defaults: camera 1, depth 1, points 1, consistency 0.5."""

    camera: float = 1.0
    depth: float = 1.0
    points: float = 1.0
    consistency: float = 0.5

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def _scale(points: torch.Tensor) -> torch.Tensor:
    centred = points - points.flatten(1, -2).mean(dim=1)[:, None, None, None]
    return centred.norm(dim=-1).mean().clamp_min(1e-8)


def inconsistency_map(pred: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-pixel cross-head error ``[B, S, H, W]``: distance between the depth map unprojected
    with the predicted cameras and the point map (``depth [B, S, H, W, 1]``, ``pose_enc
    [B, S', 9]``, ``world_points [B, S, H, W, 3]``; with S' > S, the maps are of the first S
    frames, as the calibration stream's ``dense_frames`` gives them)."""
    S, (H, W) = pred["depth"].shape[1], pred["depth"].shape[-3:-1]
    extrinsics, intrinsics = pose_encoding_to_extri_intri(pred["pose_enc"][:, :S], (H, W))
    unprojected = unproject_depth_map_to_point_map(pred["depth"][..., 0], extrinsics, intrinsics)
    return (unprojected - pred["world_points"]).norm(dim=-1)


def reference(preds: Sequence[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
    """FP32 predictions with what every comparison reuses (point scale, per-pixel inconsistency)."""
    out = []
    for p in preds:
        r = dict(p)
        if "world_points" in p:
            r["_scale"] = _scale(p["world_points"])
        if {"depth", "pose_enc", "world_points"} <= set(p):
            r["_inconsistency"] = inconsistency_map(p)
        out.append(r)
    return out


def head_losses(pred: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The four terms for one scene (a head the model lacks is left out)."""
    out: Dict[str, float] = {}
    if "pose_enc" in pred:
        out["camera"] = float((pred["pose_enc"] - ref["pose_enc"]).abs().mean())
    if "depth" in pred:
        d, dr = pred["depth"].clamp_min(1e-6), ref["depth"].clamp_min(1e-6)
        out["depth"] = float((d.log() - dr.log()).abs().mean())
    if "world_points" in pred:
        out["points"] = float((pred["world_points"] - ref["world_points"]).norm(dim=-1).mean() / ref["_scale"])
    if "_inconsistency" in ref:
        change = (inconsistency_map(pred) - ref["_inconsistency"]).abs().mean()
        out["consistency"] = float(change / ref["_scale"])
    return out


def task_loss(preds: Sequence[Dict[str, torch.Tensor]], refs: Sequence[Dict[str, torch.Tensor]],
              weights: TaskWeights = TaskWeights()) -> Dict[str, float]:
    """Mean over scenes of each head term, and their weighted sum under ``"task"``."""
    totals: Dict[str, float] = {}
    for pred, ref in zip(preds, refs):
        for k, v in head_losses(pred, ref).items():
            totals[k] = totals.get(k, 0.0) + v / len(preds)
    w = weights.as_dict()
    totals["task"] = sum(w[k] * v for k, v in totals.items() if k in w)
    return totals
