"""Camera pose metrics exactly as VGGT's official evaluation (``/work/shared/reference/vggt-eval.md``).

For every unordered frame pair (i < j) the relative pose ``E_i inv(E_j)`` (4x4 camera-from-world
E) is formed for prediction and ground truth, then:

- RRE (degrees): ``arccos(1 - 2 L)`` with ``L = clamp(1 - <q_pred, q_gt>^2, 1e-15)`` (quaternions of
  the relative rotations; sign-invariant geodesic angle).
- RTE (degrees): angle between the relative translation directions, ``arccos(sqrt(1 - L))`` with
  ``L = clamp(1 - <t_pred, t_gt>^2, 1e-15)`` on unit vectors (eps 1e-15), NaN/Inf -> 1e6, then
  ``min(err, |180 - err|)``. A zero predicted translation gives 90 degrees.
- RRA@t / RTA@t: fraction of pairs with RRE < t / RTE < t.
- AUC@T: histogram of ``max(RRE, RTE)`` over integer bins ``[0, 1), ..., [T-1, T]``, normalised by
  the number of pairs, cumulative sum, mean (in [0, 1]; reported x100 by the summary).
All in float64, as the official code.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from qvggt_deploy.geometry import closed_form_inverse_se3, mat_to_quat


def _to_4x4(E: torch.Tensor) -> torch.Tensor:
    if E.shape[-2:] == (4, 4):
        return E
    bottom = torch.zeros(E.shape[:-2] + (1, 4), dtype=E.dtype)
    bottom[..., 0, 3] = 1
    return torch.cat([E, bottom], dim=-2)


def pair_indices(num_frames: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs (i < j): two index tensors of length S(S-1)/2."""
    i, j = torch.triu_indices(num_frames, num_frames, offset=1)
    return i, j


def relative_poses(extrinsics: torch.Tensor) -> torch.Tensor:
    """``extrinsics [S,3,4]`` (or 4x4) -> relative poses ``E_i inv(E_j)`` ``[P,4,4]`` for i < j."""
    E = _to_4x4(torch.as_tensor(extrinsics).double())
    i, j = pair_indices(E.shape[0])
    return E[i] @ closed_form_inverse_se3(E[j])


def rotation_angle_error(R_pred: torch.Tensor, R_gt: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (degrees) between rotations ``[P,3,3]`` via quaternions (official formula)."""
    q_pred, q_gt = mat_to_quat(R_pred.double()), mat_to_quat(R_gt.double())
    loss_q = (1 - (q_pred * q_gt).sum(-1) ** 2).clamp(min=1e-15)
    return torch.rad2deg(torch.arccos(1 - 2 * loss_q))


def translation_angle_error(t_pred: torch.Tensor, t_gt: torch.Tensor, eps: float = 1e-15) -> torch.Tensor:
    """Angle (degrees, in [0, 90]) between translation directions ``[P,3]`` (official formula)."""
    t_pred, t_gt = t_pred.double(), t_gt.double()
    t_pred = t_pred / (t_pred.norm(dim=-1, keepdim=True) + eps)
    t_gt = t_gt / (t_gt.norm(dim=-1, keepdim=True) + eps)
    loss_t = (1 - (t_pred * t_gt).sum(-1) ** 2).clamp(min=eps)
    err = torch.rad2deg(torch.arccos(torch.sqrt(1 - loss_t)))
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, 1e6))
    return torch.minimum(err, (180 - err).abs())


def relative_pose_errors(pred_extrinsics, gt_extrinsics) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[S,3,4]`` each -> (RRE ``[P]``, RTE ``[P]``) in degrees over all pairs i < j."""
    rel_pred = relative_poses(pred_extrinsics)
    rel_gt = relative_poses(gt_extrinsics)
    rre = rotation_angle_error(rel_pred[:, :3, :3], rel_gt[:, :3, :3])
    rte = translation_angle_error(rel_pred[:, :3, 3], rel_gt[:, :3, 3])
    return rre, rte


def accuracy_at(errors, threshold: float) -> float:
    """Fraction of ``errors`` strictly below ``threshold``."""
    e = np.asarray(errors, dtype=np.float64)
    return float((e < threshold).mean()) if e.size else float("nan")


def auc(rre, rte, max_threshold: int = 30) -> float:
    """AUC@``max_threshold`` in [0, 1] from per-pair errors (official ``calculate_auc_np``)."""
    max_errors = np.maximum(np.asarray(rre, dtype=np.float64), np.asarray(rte, dtype=np.float64))
    if max_errors.size == 0:
        return float("nan")
    histogram, _ = np.histogram(max_errors, bins=np.arange(max_threshold + 1))
    return float(np.mean(np.cumsum(histogram.astype(np.float64) / max_errors.size)))


def camera_metrics(pred_extrinsics, gt_extrinsics, thresholds: Sequence[int] = (5, 15, 30),
                   auc_thresholds: Sequence[int] = (30, 15, 5, 3)) -> Dict[str, float]:
    """Flat dict: ``rre_deg``/``rte_deg`` (mean over pairs), ``rra@t``, ``rta@t`` (percent) and
    ``auc@T`` (percent). Needs at least 2 frames."""
    rre, rte = relative_pose_errors(pred_extrinsics, gt_extrinsics)
    return camera_metrics_from_errors(rre, rte, thresholds, auc_thresholds)


def camera_metrics_from_errors(rre, rte, thresholds: Sequence[int] = (5, 15, 30),
                               auc_thresholds: Sequence[int] = (30, 15, 5, 3)) -> Dict[str, float]:
    """:func:`camera_metrics` from per-pair errors (degrees), e.g. the pairs of every sequence of a
    CO3Dv2 category pooled, as the official per-category AUC."""
    rre = torch.as_tensor(np.asarray(rre, dtype=np.float64))
    rte = torch.as_tensor(np.asarray(rte, dtype=np.float64))
    out = {"rre_deg": float(rre.mean()), "rte_deg": float(rte.mean())}
    for t in thresholds:
        out[f"rra@{t}"] = 100 * accuracy_at(rre, t)
        out[f"rta@{t}"] = 100 * accuracy_at(rte, t)
    for t in auc_thresholds:
        out[f"auc@{t}"] = 100 * auc(rre, rte, t)
    return out
