"""EfficientUpdateFormer: the tracker's transformer (CoTracker2), predicting per-track, per-frame
updates from the stacked track tokens.

Each layer attends along time (every track over its S frames), then across tracks through a few
learned *virtual tracks* instead of all-pairs attention: virtual tracks read the points
(``space_virtual2point_blocks``), attend among themselves (``space_virtual_blocks``), and the
points read them back (``space_point2virtual_blocks``). The output adds a skip from the projected
input. Key ``virual_tracks`` keeps the official typo so the checkpoint loads.
"""
from __future__ import annotations

import torch
from torch import nn

from qvggt_deploy.model.heads.track_modules.attention_blocks import AttnBlock, CrossAttnBlock


class EfficientUpdateFormer(nn.Module):
    """Args:
        input_dim (int): width of the input tokens (VGGT-1B: 388).
        hidden_size (int): transformer width (384).
        output_dim (int): width of the output (2 coordinate + latent feature deltas, 130).
        depth (int): layers; each has one time block and one of each space block (6).
        num_heads (int): attention heads (8).
        mlp_ratio (float): MLP hidden width / hidden_size. Defaults to 4.0.
        num_virtual_tracks (int): learned tracks of the space attention (64).
    """

    def __init__(self, input_dim: int, hidden_size: int, output_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, num_virtual_tracks: int = 64):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList(AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(
            AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(
            CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: Xavier-uniform linear and attention weights with zero biases, unit
        normal virtual tracks, and a near-zero ``flow_head`` (std 1e-3) so that the first updates
        barely move the tracks."""
        nn.init.normal_(self.virual_tracks)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.xavier_uniform_(module.in_proj_weight)
                nn.init.zeros_(module.in_proj_bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, N, T, input_dim]`` -> ``[B, N, T, output_dim]``. N: tracks, T: frames."""
        if x.dim() != 4:
            raise ValueError(f"x must be [B, N, T, D], got {tuple(x.shape)}")
        tokens = self.input_transform(self.input_norm(x))
        init_tokens = tokens
        B, N, T, D = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.expand(B, -1, T, -1)], dim=1)
        M = N + self.num_virtual_tracks
        for time_block, virtual_block, point2virtual, virtual2point in zip(
                self.time_blocks, self.space_virtual_blocks, self.space_point2virtual_blocks,
                self.space_virtual2point_blocks):
            tokens = time_block(tokens.reshape(B * M, T, D)).reshape(B, M, T, D)
            space = tokens.permute(0, 2, 1, 3).reshape(B * T, M, D)
            points, virtual = space[:, :N], space[:, N:]
            virtual = virtual_block(virtual2point(virtual, points))
            points = point2virtual(points, virtual)
            tokens = torch.cat([points, virtual], dim=1).reshape(B, T, M, D).permute(0, 2, 1, 3)
        return self.flow_head(self.output_norm(tokens[:, :N] + init_tokens))
