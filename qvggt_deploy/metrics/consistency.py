"""Cross-head consistency: do the depth + camera heads and the point head agree?

Needs no ground truth, so it also tells whether quantization broke one head but not the other.
The predicted depth is unprojected with the predicted cameras (VGGT's unprojection), giving
points ``P_dc``; the point head gives ``P_pm``. Both live in the model's normalised frame, but
their scales may drift independently, so each cloud is divided by its mean distance to the
origin over the compared pixels before comparing:

``consistency = mean_pixels |P_dc / m_dc - P_pm / m_pm|`` (lower is better; 0 = identical up to scale).

Shapes: S frames, H x W pixels.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from qvggt_deploy.geometry import unproject_depth_map_to_point_map


def consistency_metrics(depth, extrinsics, intrinsics, world_points, mask: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """``depth [S,H,W(,1)]``, ``extrinsics [S,3,4]``, ``intrinsics [S,3,3]`` (predicted cameras),
    ``world_points [S,H,W,3]`` (point head), optional ``mask [S,H,W]`` of pixels to compare
    (default: all) -> ``{"consistency"}``."""
    d = torch.as_tensor(depth).double()
    if d.dim() == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    p_dc = unproject_depth_map_to_point_map(d, torch.as_tensor(extrinsics).double(),
                                            torch.as_tensor(intrinsics).double())
    p_pm = torch.as_tensor(world_points).double()
    m = torch.ones(d.shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    m = m & torch.isfinite(p_dc).all(-1) & torch.isfinite(p_pm).all(-1)
    if not m.any():
        return {"consistency": float("nan")}
    a, b = p_dc[m], p_pm[m]
    a = a / a.norm(dim=-1).mean().clamp_min(1e-12)
    b = b / b.norm(dim=-1).mean().clamp_min(1e-12)
    return {"consistency": float((a - b).norm(dim=-1).mean())}
