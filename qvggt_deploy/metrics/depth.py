"""Depth metrics: AbsRel and delta < 1.25 after per-image median scaling.

VGGT predicts depth up to an unknown scale, so each predicted depth map is multiplied by
``median(gt) / median(pred)`` over that image's valid pixels (valid = ground-truth mask and
gt > 0; predictions must be positive). Then, per image,
``AbsRel = mean(|d_pred - d_gt| / d_gt)`` and ``delta<1.25 = mean(max(d_pred/d_gt, d_gt/d_pred) < 1.25)``
over valid pixels (delta reported in percent); a scene's value is the mean over its images (images
without valid pixels are skipped). Float64.
Shapes: S frames, H x W pixels.
"""
from __future__ import annotations

from typing import Dict

import torch


def _median(x: torch.Tensor) -> torch.Tensor:
    """numpy's median (mean of the two middle values for even counts; torch.median takes the lower)."""
    k = x.numel()
    top = torch.topk(x.flatten(), k // 2 + 1, largest=False).values[-2:]
    return top[-1] if k % 2 else top.mean()


def median_scale(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image ``median(gt) / median(pred)`` over valid pixels; ``[S,H,W]`` -> ``[S]``."""
    scales = []
    for p, g, m in zip(pred, gt, mask):
        if m.any():
            scales.append(_median(g[m]) / _median(p[m]).clamp_min(1e-12))
        else:
            scales.append(torch.tensor(1.0, dtype=pred.dtype))
    return torch.stack(scales)


def depth_metrics(pred_depth, gt_depth, mask) -> Dict[str, float]:
    """``pred_depth [S,H,W]`` (a trailing singleton channel is accepted), ``gt_depth [S,H,W]``,
    ``mask [S,H,W]`` -> ``{"abs_rel", "delta_1.25"}`` (lower / higher is better)."""
    pred = torch.as_tensor(pred_depth).double()
    if pred.dim() == 4 and pred.shape[-1] == 1:
        pred = pred[..., 0]
    gt = torch.as_tensor(gt_depth).double()
    mask = torch.as_tensor(mask).bool() & (gt > 0) & torch.isfinite(pred) & (pred > 0)
    scale = median_scale(pred, gt, mask)
    aligned = pred * scale[:, None, None]
    abs_rel, delta = [], []
    for p, g, m in zip(aligned, gt, mask):
        if not m.any():
            continue
        p, g = p[m], g[m]
        abs_rel.append(((p - g).abs() / g).mean())
        delta.append((torch.maximum(p / g, g / p) < 1.25).double().mean())
    if not abs_rel:
        return {"abs_rel": float("nan"), "delta_1.25": float("nan")}
    return {"abs_rel": float(torch.stack(abs_rel).mean()), "delta_1.25": 100 * float(torch.stack(delta).mean())}
