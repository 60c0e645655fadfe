"""DINOv2 ViT with register tokens, used by VGGT as its "patch embed" (ViT-L/14-reg for VGGT-1B).

References: Oquab et al., DINOv2 (arXiv 2304.07193); Darcet et al., Vision Transformers Need
Registers (arXiv 2309.16588).

Token layout per image: ``[CLS, R_1..R_r, patches]``; registers get no positional embedding.
The output is the final-LayerNorm'd patch tokens (``x_norm_patchtokens``): CLS and registers are
dropped. Keys: ``cls_token``, ``pos_embed``, ``register_tokens``, ``mask_token`` (unused at
inference but part of the checkpoint), ``patch_embed.proj``, ``blocks.N``, ``norm``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.model.layers.block import Block

DINO_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping conv patchify: ``[B, 3, H, W] -> [B, (H/p)*(W/p), dim]``, row-major."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, num_register_tokens: int = 4, init_values: float = 1.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=DINO_NORM_EPS)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=DINO_NORM_EPS)

    def interpolate_pos_encoding(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """Positional embedding ``[1, 1 + h*w, dim]`` for an input of ``height x width`` pixels.

        The stored table is used as is only for exactly ``img_size x img_size`` inputs; otherwise
        the patch part is resized in fp32 with bicubic, antialias=True, size-based (VGGT's
        interpolate_offset = 0), and the CLS entry is kept.
        """
        rows, cols = height // self.patch_size, width // self.patch_size
        if rows == self.grid and cols == self.grid:
            return self.pos_embed.to(dtype)
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        dim = pos.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(rows, cols), mode="bicubic", antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        return torch.cat([cls_pos, patch_pos], dim=1).to(dtype)

    def prepare_tokens(self, images: torch.Tensor) -> torch.Tensor:
        B, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(H, W, x.dtype)
        registers = self.register_tokens.expand(B, -1, -1)
        return torch.cat([x[:, :1], registers, x[:, 1:]], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` (already ImageNet-normalised) -> patch tokens ``[B, P, dim]``."""
        x = self.prepare_tokens(images)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 1 + self.num_register_tokens:]
