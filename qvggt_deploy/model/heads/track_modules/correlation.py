"""Multi-scale correlation features (RAFT / CoTracker style), as in the official VGGT tracker.

Each track's feature vector is correlated (dot product / sqrt(C)) with every pixel of its frame's
feature map at ``levels`` scales (level l: the map average-pooled 2x2 l times, odd sizes floored),
and the correlation map is read bilinearly (pixel centres, zero padding) on a (2r+1) x (2r+1)
window of integer offsets around the track position scaled by 2^-l.

Window layout (kept for checkpoint fidelity, it fixes the input order of ``corr_mlp``): entry
``i * (2r+1) + j`` of a level is read at ``(x + i - r, y + j - r)``, i.e. the *slow* index moves x.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F

from qvggt_deploy.model.heads.track_modules.sampling import bilinear_sample


def feature_pyramid(fmaps: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """``fmaps [B, S, C, H, W]`` -> ``levels`` maps, level l ``[B, S, C, H >> l, W >> l]``."""
    if fmaps.dim() != 5:
        raise ValueError(f"fmaps must be [B, S, C, H, W], got {tuple(fmaps.shape)}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    pyramid = [fmaps]
    for _ in range(levels - 1):
        B, S, C, H, W = pyramid[-1].shape
        pooled = F.avg_pool2d(pyramid[-1].reshape(B * S, C, H, W), kernel_size=2, stride=2)
        pyramid.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
    return pyramid


def window_offsets(radius: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """``[2r+1, 2r+1, 2]`` pixel offsets; ``[i, j] = (i - r, j - r)`` added to (x, y)."""
    d = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1)


def sample_correlation(pyramid: List[torch.Tensor], feats: torch.Tensor, coords: torch.Tensor,
                       radius: int) -> torch.Tensor:
    """Windowed correlation of track features with the pyramid.

    Args:
        pyramid (list of Tensor): from :func:`feature_pyramid`, level 0 ``[B, S, C, H, W]``.
        feats (Tensor): ``[B, S, N, C]`` track features per frame. N: tracks.
        coords (Tensor): ``[B, S, N, 2]`` track positions (x, y) in level-0 pixels.
        radius (int): r; the window is (2r+1)^2.

    Returns:
        Tensor ``[B, S, N, levels * (2r+1)^2]``, level-major.
    """
    B, S, C = pyramid[0].shape[:3]
    if feats.dim() != 4 or feats.shape[:2] != (B, S) or feats.shape[-1] != C:
        raise ValueError(f"feats must be [B={B}, S={S}, N, C={C}], got {tuple(feats.shape)}")
    N = feats.shape[2]
    if tuple(coords.shape) != (B, S, N, 2):
        raise ValueError(f"coords must be [{B}, {S}, {N}, 2], got {tuple(coords.shape)}")
    side = 2 * radius + 1
    offsets = window_offsets(radius, coords.dtype, coords.device)
    out = []
    for level, fmap in enumerate(pyramid):
        H, W = fmap.shape[-2:]
        corr = torch.matmul(feats, fmap.reshape(B, S, C, H * W)) / math.sqrt(C)
        centres = coords.reshape(B * S * N, 1, 1, 2) / (2 ** level)
        window = bilinear_sample(corr.reshape(B * S * N, 1, H, W), centres + offsets, padding_mode="zeros")
        out.append(window.reshape(B, S, N, side * side))
    return torch.cat(out, dim=-1)
