"""Ground-truth point tracks from generated scenes, and the track head's loss.

Why: relative pose between two views is what correspondences determine. Generated scenes give
them for free: a query pixel of frame 0 has a known world point, which projects into every other
frame through the true camera, and the rendered depth there says whether it is seen or hidden.
Training the track head on these tracks pushes the aggregator's features (which the track head
reads through its DPT feature extractor) towards cross-view matching, as VGGT's own training does.

Conventions are those of the scene folders (``docs/scenes.md``): OpenCV camera-from-world
extrinsics, pixel ``(u, v)`` = (column, row) without a half-pixel offset, z-depth.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F

VISIBLE_DEPTH_TOLERANCE = 0.03  # relative: projected z within 3% of the rendered depth = not occluded


def sample_query_points(mask0: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct valid pixels of frame 0 per sample, as ``[B, count, 2]`` integer-valued
    (x, y). ``mask0 [B, H, W]``; a sample with fewer valid pixels repeats some."""
    B, H, W = mask0.shape
    out = []
    for b in range(B):
        weights = mask0[b].flatten().float()
        if weights.sum() == 0:  # nothing valid: any pixel (its track is then marked invisible)
            weights = torch.ones_like(weights)
        flat = torch.multinomial(weights, count, replacement=int((weights > 0).sum()) < count,
                                 generator=generator)
        out.append(torch.stack([flat % W, flat // W], dim=-1))
    return torch.stack(out).float()


def ground_truth_tracks(query_points: torch.Tensor, world_points: torch.Tensor, mask: torch.Tensor,
                        depth: torch.Tensor, extrinsics: torch.Tensor,
                        intrinsics: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Where frame 0's query pixels are in every frame, and whether they are seen there.

    Args:
        query_points: ``[B, N, 2]`` integer-valued pixel (x, y) in frame 0.
        world_points, mask, depth: ``[B, S, H, W, 3]``, ``[B, S, H, W]`` bool, ``[B, S, H, W]``.
        extrinsics, intrinsics: ``[B, S, 3, 4]`` camera-from-world, ``[B, S, 3, 3]``.

    Returns:
        ``tracks [B, S, N, 2]`` (frame 0 = the queries) and ``visible [B, S, N]`` bool: valid
        query, in front of the camera, inside the image and not hidden (rendered depth at the
        nearest pixel within :data:`VISIBLE_DEPTH_TOLERANCE` of the projected depth).
    """
    B, S, H, W = depth.shape
    x = query_points[..., 0].long().clamp(0, W - 1)
    y = query_points[..., 1].long().clamp(0, H - 1)
    batch = torch.arange(B)[:, None]
    points = world_points[batch, 0, y, x]  # [B, N, 3]
    valid0 = mask[batch, 0, y, x]  # [B, N]
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    cam = torch.einsum("bsij,bnj->bsni", R, points) + t[:, :, None]  # [B, S, N, 3]
    z = cam[..., 2]
    safe_z = torch.where(z > 1e-6, z, torch.ones_like(z))
    fx, fy = intrinsics[..., 0, 0, None], intrinsics[..., 1, 1, None]
    cx, cy = intrinsics[..., 0, 2, None], intrinsics[..., 1, 2, None]
    u = fx * cam[..., 0] / safe_z + cx
    v = fy * cam[..., 1] / safe_z + cy
    tracks = torch.stack([u, v], dim=-1)
    tracks[:, 0] = query_points
    inside = (z > 1e-6) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    ui = u.round().long().clamp(0, W - 1)
    vi = v.round().long().clamp(0, H - 1)
    frames = torch.arange(S)[None, :, None]
    seen_depth = depth[batch[:, :, None], frames, vi, ui]
    seen_valid = mask[batch[:, :, None], frames, vi, ui]
    unoccluded = seen_valid & ((seen_depth - z).abs() <= VISIBLE_DEPTH_TOLERANCE * z.abs())
    visible = inside & unoccluded & valid0[:, None]
    visible[:, 0] = valid0
    return {"tracks": tracks, "visible": visible}


def query_tracks(world_points: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor, extrinsics: torch.Tensor,
                 intrinsics: torch.Tensor, count: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """``count`` query pixels drawn from frame 0's valid pixels and their true tracks: ``query_points``
    plus the keys of :func:`ground_truth_tracks` (inputs ``[B, S, ...]`` as there)."""
    query = sample_query_points(mask[:, 0], count, generator)
    return {"query_points": query, **ground_truth_tracks(query, world_points, mask, depth, extrinsics, intrinsics)}


def track_loss(track_list: List[torch.Tensor], visibility: torch.Tensor, gt_tracks: torch.Tensor,
               gt_visible: torch.Tensor, image_size: int, gamma: float = 0.8,
               weight_visibility: float = 0.05) -> Dict[str, torch.Tensor]:
    """Weighted L1 over the refinement iterations on visible points of frames 1.. (frame 0 is the
    query itself), in units of the image side, plus the visibility BCE.

    Returns ``loss_track`` and, for logs, ``track_px`` (mean pixel error of the last iteration on
    visible points) and ``track_vis_bce``.
    """
    seen = gt_visible[:, 1:]
    count = seen.sum().clamp_min(1)
    n = len(track_list)
    position = gt_tracks.new_zeros(())
    for i, pred in enumerate(track_list):
        err = (pred[:, 1:] - gt_tracks[:, 1:]).abs().sum(-1) / image_size
        position = position + gamma ** (n - 1 - i) * (err * seen).sum() / count
    last_px = ((track_list[-1][:, 1:] - gt_tracks[:, 1:]).norm(dim=-1) * seen).sum() / count
    vis_bce = F.binary_cross_entropy(visibility[:, 1:].clamp(1e-6, 1 - 1e-6), gt_visible[:, 1:].float())
    return {"loss_track": position / n + weight_visibility * vis_bce,
            "track_px": last_px.detach(), "track_vis_bce": vis_bce.detach()}
