"""Self- and cross-attention blocks of the tracker's update transformer (CoTracker2 style).

Quirk kept for checkpoint fidelity: the first LayerNorm *replaces* the input before the residual,
``x = norm1(x); x = x + attn(x); x = x + mlp(norm2(x))``, so the residual stream restarts from
the normalised tokens in every block. Attention is ``nn.MultiheadAttention`` (batch first), whose
packed ``in_proj_weight [3D, D]`` is the official key layout.
"""
from __future__ import annotations

import torch
from torch import nn

from qvggt_deploy.model.layers.mlp import Mlp


class AttnBlock(nn.Module):
    """Self-attention over ``x [M, L, D]`` (M: independent sequences, L: their length)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """``x [M, L, D]`` attends to ``context [M, Lc, D]`` (context normalised by ``norm_context``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))
