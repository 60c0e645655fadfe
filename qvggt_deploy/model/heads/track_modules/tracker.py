"""BaseTrackerPredictor: iterative point tracking on per-frame feature maps (CoTracker2 / VGGSfM
style), as in the official VGGT track head.

Every track starts at its query point in all frames, carrying the query's feature. Each
iteration builds one token per (track, frame):
``[flow sin/cos (latent), flow / max_scale (2), flow / max_scale (2), corr_mlp(correlation) (latent),
track feature (latent)]`` plus the sampled 2-D position embedding of the query and a learned
``query_ref_token`` (row 0 for frame 0, row 1 for the others); the update transformer returns
coordinate and feature deltas. Coordinates are detached at the start of every iteration (no
gradient through the iteration chain; the features keep theirs), and frame 0 is reset to the query.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from qvggt_deploy.model.heads.track_modules.correlation import feature_pyramid, sample_correlation
from qvggt_deploy.model.heads.track_modules.embeddings import flow_embedding, point_position_embedding
from qvggt_deploy.model.heads.track_modules.sampling import sample_points
from qvggt_deploy.model.heads.track_modules.update_former import EfficientUpdateFormer
from qvggt_deploy.model.layers.mlp import Mlp


class BaseTrackerPredictor(nn.Module):
    """Args (VGGT-1B values in brackets):
        latent_dim (int): channels of the feature maps and track features, divisible by 4 [128].
        hidden_size (int): update-transformer width, also the correlation MLP's hidden width [384].
        depth (int): update-transformer layers [6].
        num_heads (int): attention heads [8].
        corr_levels (int): correlation pyramid levels [7].
        corr_radius (int): correlation window radius r, window (2r+1)^2 [4].
        num_virtual_tracks (int): virtual tracks of the space attention [64].
        stride (int): image pixels per feature-map pixel [2].
        max_scale (float): divisor of the raw flow in the tokens [518].
        mlp_ratio (float): update-transformer MLP ratio [4.0].
    """

    def __init__(self, latent_dim: int = 128, hidden_size: int = 384, depth: int = 6, num_heads: int = 8,
                 corr_levels: int = 7, corr_radius: int = 4, num_virtual_tracks: int = 64, stride: int = 2,
                 max_scale: float = 518.0, mlp_ratio: float = 4.0):
        super().__init__()
        if latent_dim % 4 or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive multiple of 4, got {latent_dim}")
        self.latent_dim = latent_dim
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.stride = stride
        self.max_scale = max_scale
        # Token: flow embedding (2 * latent/2) + 2 x raw flow (4) + correlation + track feature.
        self.transformer_dim = 3 * latent_dim + 4
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.corr_mlp = Mlp(corr_levels * (2 * corr_radius + 1) ** 2, hidden_size, latent_dim)
        self.updateformer = EfficientUpdateFormer(
            self.transformer_dim, hidden_size, latent_dim + 2, depth, num_heads, mlp_ratio,
            num_virtual_tracks)
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def reset_parameters(self) -> None:
        """The official init: unit-normal ``query_ref_token``, PyTorch defaults for the MLPs and
        norms, and the update transformer's own scheme."""
        nn.init.normal_(self.query_ref_token)
        for module in (self.corr_mlp, self.fmap_norm, self.ffeat_norm, self.ffeat_updater,
                       self.vis_predictor, self.conf_predictor):
            for sub in module.modules():
                if isinstance(sub, (nn.Linear, nn.LayerNorm, nn.GroupNorm)):
                    sub.reset_parameters()
        self.updateformer.reset_parameters()

    def forward(self, query_points: torch.Tensor, fmaps: torch.Tensor,
                iterations: int = 4) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Track the query points through the frames.

        Args:
            query_points (Tensor): ``[B, N, 2]`` pixel (x, y) in frame 0 of the *image*
                (``stride`` times the feature map). B: batch, N: tracks.
            fmaps (Tensor): ``[B, S, C, h, w]`` feature maps, C = latent_dim. S: frames.
            iterations (int): refinement rounds. Defaults to 4.

        Returns:
            (list of ``iterations`` tracks ``[B, S, N, 2]`` in image pixels, last = final;
            visibility ``[B, S, N]`` in (0, 1); confidence ``[B, S, N]`` in (0, 1)).
        """
        if fmaps.dim() != 5 or fmaps.shape[2] != self.latent_dim:
            raise ValueError(f"fmaps must be [B, S, {self.latent_dim}, h, w], got {tuple(fmaps.shape)}")
        B, S, C, h, w = fmaps.shape
        if query_points.dim() != 3 or query_points.shape[0] != B or query_points.shape[-1] != 2:
            raise ValueError(f"query_points must be [B={B}, N, 2], got {tuple(query_points.shape)}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        N = query_points.shape[1]

        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        query = query_points.to(fmaps.dtype) / float(self.stride)  # feature-map pixels
        coords = query[:, None].expand(B, S, N, 2)
        track_feats = sample_points(fmaps[:, 0], query)[:, None].expand(B, S, N, C)
        pyramid = feature_pyramid(fmaps, self.corr_levels)

        # Fixed over the iterations: position embedding of the query (frame-0 coordinates never
        # move) and the query/other-frame reference token, both broadcast over the frames.
        pos_embed = point_position_embedding(query, self.transformer_dim, h, w).reshape(B * N, 1, -1)
        ref_token = torch.cat([self.query_ref_token[:, :1],
                               self.query_ref_token[:, 1:].expand(-1, S - 1, -1)], dim=1)

        coord_preds = []
        for _ in range(iterations):
            coords = coords.detach()
            corr = sample_correlation(pyramid, track_feats, coords, self.corr_radius)
            corr = self.corr_mlp(corr.permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            scaled = flows / self.max_scale
            feats = track_feats.permute(0, 2, 1, 3).reshape(B * N, S, C)
            flow_emb = flow_embedding(flows, self.latent_dim // 2)
            tokens = torch.cat([flow_emb, scaled, scaled, corr, feats], dim=-1)
            tokens = tokens + pos_embed + ref_token.to(tokens.dtype)

            delta = self.updateformer(tokens.reshape(B, N, S, -1))  # [B, N, S, 2 + C]
            delta_feats = delta[..., 2:].reshape(B * N * S, C)
            feats = self.ffeat_updater(self.ffeat_norm(delta_feats)) + feats.reshape(B * N * S, C)
            track_feats = feats.reshape(B, N, S, C).permute(0, 2, 1, 3)
            coords = coords + delta[..., :2].permute(0, 2, 1, 3)
            coords = torch.cat([query[:, None], coords[:, 1:]], dim=1)  # frame 0 stays the query
            coord_preds.append(coords * self.stride)

        vis = torch.sigmoid(self.vis_predictor(track_feats)[..., 0])
        conf = torch.sigmoid(self.conf_predictor(track_feats)[..., 0])
        return coord_preds, vis, conf
