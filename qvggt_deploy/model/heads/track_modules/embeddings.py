"""Sin/cos embeddings of the tracker: the flow embedding and the 2-D position embedding.

The two use different formulas in the official model (kept for checkpoint fidelity):

- flow: CoTracker's ``get_2d_embedding``, per axis C values, sin/cos *interleaved*, frequencies
  on a linear ladder ``f_k = 2k * 1000 / C`` (k < C/2); x block then y block.
- position: MAE-style table, per axis D/2 values ``[sin(p w_k) | cos(p w_k)]`` with
  ``w_k = 10000^(-k / (D/4))``; x half then y half, read bilinearly at the query point.
"""
from __future__ import annotations

import torch

from qvggt_deploy.model.heads.dpt_head import sincos_1d


def flow_embedding(flows: torch.Tensor, channels: int) -> torch.Tensor:
    """``flows [..., 2]`` (x, y) -> ``[..., 2 * channels]``:
    ``[sin(x f_0), cos(x f_0), sin(x f_1), ..., cos(x f_{C/2-1}), <same for y>]``.

    Args:
        flows (Tensor): displacements in feature-map pixels.
        channels (int): C, values per axis; even.
    """
    if channels % 2 or channels <= 0:
        raise ValueError(f"flow embedding channels must be positive and even, got {channels}")
    if flows.shape[-1] != 2:
        raise ValueError(f"flows must end in (x, y), got shape {tuple(flows.shape)}")
    freqs = torch.arange(0, channels, 2, dtype=flows.dtype, device=flows.device) * (1000.0 / channels)

    def axis(v: torch.Tensor) -> torch.Tensor:
        angles = v * freqs
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)

    return torch.cat([axis(flows[..., 0:1]), axis(flows[..., 1:2])], dim=-1)


def _lerp_axis(pos: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """1-D table ``sincos_1d(dim, i)`` for i = 0..size-1 read at ``pos [...]`` with bilinear
    weights and border clamping (exactly what ``grid_sample`` does along one axis)."""
    p = pos.clamp(0, size - 1)
    p0 = p.floor()
    p1 = (p0 + 1).clamp(max=size - 1)
    w = (p - p0).unsqueeze(-1)
    e0 = sincos_1d(dim, p0.reshape(-1), omega_0=10000.0).reshape(*pos.shape, dim)
    e1 = sincos_1d(dim, p1.reshape(-1), omega_0=10000.0).reshape(*pos.shape, dim)
    return (e0 * (1 - w) + e1 * w).to(pos.dtype)


def point_position_embedding(points: torch.Tensor, dim: int, height: int, width: int) -> torch.Tensor:
    """2-D sin/cos embedding of ``points [..., 2]`` (x, y feature-map pixels) -> ``[..., dim]``.

    The official tracker builds a ``[dim, height, width]`` table whose cell (x, y) holds
    ``[sincos_1d(dim/2, x) | sincos_1d(dim/2, y)]`` and samples it bilinearly (pixel centres,
    border padding). Each half depends on one axis only, so the bilinear read equals a 1-D
    interpolation per axis: the same values without the table (259 x 259 x 388 for VGGT-1B).
    Computed in float32 (the official table is float64 rounded to float32).

    Args:
        points (Tensor): positions, x then y.
        dim (int): D, divisible by 4.
        height, width (int): size of the feature map (table) the points live in.
    """
    if dim % 4:
        raise ValueError(f"position embedding dim must be divisible by 4, got {dim}")
    if points.shape[-1] != 2:
        raise ValueError(f"points must end in (x, y), got shape {tuple(points.shape)}")
    return torch.cat([_lerp_axis(points[..., 0], width, dim // 2),
                      _lerp_axis(points[..., 1], height, dim // 2)], dim=-1)
