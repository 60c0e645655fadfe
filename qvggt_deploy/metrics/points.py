"""Point-map metrics: accuracy, completeness and Chamfer after a similarity (Umeyama) alignment.

As VGGT's ETH3D protocol: the predicted points are aligned to ground truth with one Sim(3)
(rotation, translation, scale) estimated by Umeyama from the pixel correspondences of valid
pixels (pixel (s, v, u) of the prediction matches the same pixel of the ground truth); no ICP.
Then, on random subsets of at most ``max_points`` points per cloud (fixed seed, so results are
reproducible and fast):

- accuracy = mean distance from each aligned predicted point to its nearest ground-truth point;
- completeness = mean distance from each ground-truth point to its nearest predicted point;
- chamfer = (accuracy + completeness) / 2 ("Overall").

Distances are in ground-truth units (metres for generated scenes). Float64 for the alignment.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch


def umeyama(src: torch.Tensor, dst: torch.Tensor, with_scale: bool = True) -> Tuple[float, torch.Tensor, torch.Tensor]:
    """Similarity ``(c, R, t)`` minimising ``sum |c R src_i + t - dst_i|^2``; ``src, dst [N,3]``.

    Sigma = cov(dst, src), SVD U D V^T, S = diag(1, 1, sign(det U det V)), R = U S V^T,
    c = tr(D S) / var(src), t = mu_dst - c R mu_src.
    """
    src, dst = src.double(), dst.double()
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    sigma = xd.T @ xs / src.shape[0]
    U, D, Vt = torch.linalg.svd(sigma)
    S = torch.eye(3, dtype=torch.float64)
    if torch.det(U) * torch.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs * xs).sum(1).mean()
    c = float((D * S.diagonal()).sum() / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - c * R @ mu_s
    return c, R, t


def mutual_nearest_distances(a: torch.Tensor, b: torch.Tensor,
                             chunk: int = 2048) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest-neighbour distances both ways, ``a [N,3]`` to ``b [M,3]`` (``[N]``) and ``b`` to ``a``
    (``[M]``), from one pass over the distance matrix (Chamfer needs both; the matrix is symmetric)."""
    to_b, to_a = [], []
    for start in range(0, a.shape[0], chunk):
        # Direct differences, not the |a|^2 + |b|^2 - 2ab matmul trick: that loses small distances.
        d = torch.cdist(a[start:start + chunk], b, compute_mode="donot_use_mm_for_euclid_dist")
        to_b.append(d.amin(dim=1))
        to_a.append(d.amin(dim=0))
    if not to_b:
        return a.new_zeros(0), torch.full((b.shape[0],), float("inf"), dtype=a.dtype)
    return torch.cat(to_b), torch.stack(to_a).amin(dim=0)


def _subsample(points: torch.Tensor, max_points: int, generator: torch.Generator) -> torch.Tensor:
    if points.shape[0] <= max_points:
        return points
    idx = torch.randperm(points.shape[0], generator=generator)[:max_points]
    return points[idx]


def _mean_below(d: torch.Tensor, max_dist: Optional[float]) -> float:
    if max_dist is not None:
        d = d[d < max_dist]
    return float(d.mean()) if d.numel() else float("nan")


def point_metrics(pred_points, gt_points, mask, max_points: int = 5000, seed: int = 0,
                  prefix: str = "", max_dist: Optional[float] = None) -> Dict[str, float]:
    """``pred_points [S,H,W,3]``, ``gt_points [S,H,W,3]``, ``mask [S,H,W]`` ->
    ``{prefix+"accuracy", prefix+"completeness", prefix+"chamfer"}`` (lower is better).

    Args:
        max_points: points per cloud for the nearest-neighbour search. Defaults to 5000.
        seed: subsampling seed. Defaults to 0.
        prefix: key prefix (e.g. ``"depthcam_"`` for depth + camera unprojection).
        max_dist: leave distances at or above this out of both means (the DTU evaluation's
            outlier cut-off, 20 mm). Defaults to None (every distance counts).
    """
    pred = torch.as_tensor(pred_points).double()
    gt = torch.as_tensor(gt_points).double()
    mask = torch.as_tensor(mask).bool() & torch.isfinite(pred).all(-1)
    p, g = pred[mask], gt[mask]
    if p.shape[0] < 3:
        nan = float("nan")
        return {prefix + "accuracy": nan, prefix + "completeness": nan, prefix + "chamfer": nan}
    c, R, t = umeyama(p, g)
    center = g.mean(0)  # float32 from here: centred, so precision is spent on the scene
    aligned = (c * p @ R.T + t - center).float()
    gen = torch.Generator().manual_seed(seed)
    a = _subsample(aligned, max_points, gen)
    b = _subsample((g - center).float(), max_points, gen)
    to_b, to_a = mutual_nearest_distances(a, b)
    acc, comp = _mean_below(to_b, max_dist), _mean_below(to_a, max_dist)
    return {prefix + "accuracy": acc, prefix + "completeness": comp, prefix + "chamfer": (acc + comp) / 2}
