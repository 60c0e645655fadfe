"""Pre-norm transformer block: ``x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x))``.

The same block serves three places with different settings (see vggt-architecture.md):
DINOv2 patch embed (LayerNorm eps 1e-6, LayerScale init 1.0, no QK-norm/RoPE), aggregator
frame/global blocks (eps 1e-5, init 0.01, QK-norm + RoPE) and the camera-head trunk
(eps 1e-5, init 0.01, plain attention).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from qvggt_deploy.model.layers.attention import Attention
from qvggt_deploy.model.layers.layer_scale import LayerScale
from qvggt_deploy.model.layers.mlp import Mlp
from qvggt_deploy.model.layers.rope import RotaryPositionEmbedding2D


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: float = 0.01,
                 norm_eps: float = 1e-5, qk_norm: bool = False,
                 rope: Optional[RotaryPositionEmbedding2D] = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                              qk_norm=qk_norm, norm_eps=1e-5, rope=rope)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x
