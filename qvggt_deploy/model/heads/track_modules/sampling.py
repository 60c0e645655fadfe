"""Bilinear sampling at pixel coordinates, pixel-centre convention (CoTracker, VGGSfM, VGGT).

Coordinate ``x = 0`` is the centre of the left-most pixel and ``x = W - 1`` the centre of the
right-most one (``grid_sample`` with ``align_corners=True``). Sampling positions are constants,
as in the official tracker: gradients reach the sampled values, never the positions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bilinear_sample(values: torch.Tensor, coords: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Sample ``values [M, C, H, W]`` at ``coords [M, Ho, Wo, 2]`` (x, y pixels) -> ``[M, C, Ho, Wo]``.

    Args:
        values (Tensor): maps to read. M: batch of maps, C: channels.
        coords (Tensor): sampling positions, x then y, in pixels of ``values``.
        padding_mode (str): "border" (clamp to the edge pixels) or "zeros". Defaults to "border".
    """
    if values.dim() != 4:
        raise ValueError(f"values must be [M, C, H, W], got {tuple(values.shape)}")
    if coords.dim() != 4 or coords.shape[-1] != 2 or coords.shape[0] != values.shape[0]:
        raise ValueError(f"coords must be [M, Ho, Wo, 2] with M = {values.shape[0]}, "
                         f"got {tuple(coords.shape)}")
    H, W = values.shape[-2:]
    # Pixel (x, y) -> [-1, 1]; max(.., 1) keeps a 1-pixel axis at 0 instead of dividing by zero.
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], dtype=values.dtype, device=values.device)
    grid = coords.detach().to(values.dtype) * scale - 1.0
    return F.grid_sample(values, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def sample_points(fmap: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Features of ``fmap [M, C, H, W]`` at ``points [M, N, 2]`` (x, y pixels) -> ``[M, N, C]``,
    border padding (a point outside the map reads the nearest edge)."""
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be [M, N, 2], got {tuple(points.shape)}")
    return bilinear_sample(fmap, points[:, :, None], "border")[..., 0].transpose(1, 2)
