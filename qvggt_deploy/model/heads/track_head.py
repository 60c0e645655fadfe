"""Track head: point tracks through all frames from query points in frame 0.

A DPT feature extractor turns the aggregated tokens into per-frame feature maps at 1/stride of
the image (``feature_only``, no positional embedding: the released VGGT-1B checkpoint was trained
that way), and :class:`BaseTrackerPredictor` refines the tracks iteratively on them.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from qvggt_deploy.model.heads.dpt_head import DPTHead
from qvggt_deploy.model.heads.track_modules.tracker import BaseTrackerPredictor
from qvggt_deploy.model.presets import VGGTConfig


class TrackHead(nn.Module):
    """Submodules ``feature_extractor`` (DPTHead) and ``tracker`` (BaseTrackerPredictor), sized by
    the ``track_*`` / ``tracker_*`` fields of the config."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        if cfg.track_features != cfg.tracker_latent_dim:
            raise ValueError(f"track_features {cfg.track_features} must equal tracker_latent_dim "
                             f"{cfg.tracker_latent_dim} (the tracker reads the feature maps directly)")
        self.iterations = cfg.tracker_iterations
        self.feature_extractor = DPTHead(
            2 * cfg.embed_dim, patch_size=cfg.patch_size, features=cfg.track_features,
            out_channels=cfg.dpt_out_channels, intermediate_layer_idx=cfg.intermediate_layer_idx,
            feature_only=True, down_ratio=cfg.tracker_stride, pos_embed=False)
        self.tracker = BaseTrackerPredictor(
            latent_dim=cfg.tracker_latent_dim, hidden_size=cfg.tracker_hidden_size, depth=cfg.tracker_depth,
            num_heads=cfg.tracker_num_heads, corr_levels=cfg.tracker_corr_levels,
            corr_radius=cfg.tracker_corr_radius, num_virtual_tracks=cfg.tracker_num_virtual_tracks,
            stride=cfg.tracker_stride, max_scale=cfg.tracker_max_scale, mlp_ratio=cfg.tracker_mlp_ratio)

    def reset_parameters(self) -> None:
        """Re-apply the official tracker init (the feature extractor keeps the model-wide init)."""
        self.tracker.reset_parameters()

    def forward(self, tokens_list: List[torch.Tensor], images: torch.Tensor, patch_start_idx: int,
                query_points: torch.Tensor, iterations: Optional[int] = None,
                ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Track ``query_points`` through the frames.

        Args:
            tokens_list (list of Tensor): aggregator outputs, each ``[B, S, P, 2C]``.
            images (Tensor): ``[B, S, 3, H, W]``, only its shape is used. B: batch, S: frames.
            patch_start_idx (int): index of the first patch token.
            query_points (Tensor): ``[B, N, 2]`` or ``[N, 2]`` (shared by the batch) pixel (x, y)
                in frame 0. N: tracks.
            iterations (int, optional): refinement rounds. Defaults to ``cfg.tracker_iterations``.

        Returns:
            (list of ``iterations`` tracks ``[B, S, N, 2]`` in pixels, last = final; visibility
            ``[B, S, N]``; confidence ``[B, S, N]``), scores in (0, 1). Frame 0 equals the query.
        """
        if images.dim() != 5:
            raise ValueError(f"images must be [B, S, 3, H, W], got {tuple(images.shape)}")
        B = images.shape[0]
        if query_points.dim() == 2:
            query_points = query_points[None]
        if query_points.dim() != 3 or query_points.shape[-1] != 2 or query_points.shape[0] not in (1, B):
            raise ValueError(f"query_points must be [N, 2] or [B={B}, N, 2], got {tuple(query_points.shape)}")
        fmaps = self.feature_extractor(tokens_list, images, patch_start_idx)
        iterations = self.iterations if iterations is None else iterations
        return self.tracker(query_points.expand(B, -1, -1), fmaps, iterations)
