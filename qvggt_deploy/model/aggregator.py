"""VGGT's Aggregator: DINOv2 patch tokens + camera/register tokens, then alternating
frame-wise and global attention.

Per frame the token sequence is ``[camera(1), register(r), patches(P)]`` (patch_start_idx = 1+r).
Two sets of camera/register tokens exist: index 0 for the first frame of each sequence (this is
what anchors the output coordinate frame to camera 1), index 1 shared by all other frames.
Each of the ``depth`` iterations runs frame block i on ``[B*S, N, C]`` and global block i on
``[B, S*N, C]``, and outputs ``concat(frame_out, global_out)`` -> ``[B, S, N, 2C]``.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from qvggt_deploy.model.layers.block import Block
from qvggt_deploy.model.layers.rope import RotaryPositionEmbedding2D, patch_positions
from qvggt_deploy.model.layers.vision_transformer import DinoVisionTransformer
from qvggt_deploy.model.presets import VGGTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def special_tokens_for_frames(token: torch.Tensor, B: int, S: int) -> torch.Tensor:
    """``token [1, 2, n, C]`` -> ``[B*S, n, C]``: index 0 for frame 0, index 1 for frames 1..S-1."""
    first = token[:, 0:1].expand(B, 1, *token.shape[2:])
    others = token[:, 1:2].expand(B, S - 1, *token.shape[2:])
    return torch.cat([first, others], dim=1).reshape(B * S, *token.shape[2:])


class Aggregator(nn.Module):
    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        C = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.depth = cfg.depth
        self.patch_start_idx = cfg.patch_start_idx
        self.patch_embed = DinoVisionTransformer(
            cfg.img_size, cfg.patch_size, C, cfg.vit_depth, cfg.vit_num_heads, cfg.mlp_ratio,
            cfg.vit_num_register_tokens, cfg.vit_init_values)
        self.rope = RotaryPositionEmbedding2D(cfg.rope_freq)

        def make_block() -> Block:
            return Block(C, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.aa_init_values,
                         norm_eps=1e-5, qk_norm=True, rope=self.rope)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, C))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, C))
        # ImageNet normalisation is a constant, not a buffer: the official model registers these
        # as non-persistent buffers, so they must stay out of the state dict.

    def embed(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``images [B, S, 3, H, W]`` in [0, 1] -> (tokens ``[B*S, N, C]``, positions ``[B*S, N, 2]``)."""
        B, S, _, H, W = images.shape
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
        x = ((images - mean) / std).reshape(B * S, 3, H, W)
        patch_tokens = self.patch_embed(x)
        tokens = torch.cat([
            special_tokens_for_frames(self.camera_token, B, S).to(patch_tokens.dtype),
            special_tokens_for_frames(self.register_token, B, S).to(patch_tokens.dtype),
            patch_tokens,
        ], dim=1)
        pos = patch_positions(B * S, H // self.patch_size, W // self.patch_size, self.patch_start_idx,
                              device=images.device)
        return tokens, pos

    def forward(self, images: torch.Tensor) -> Tuple[List[torch.Tensor], int]:
        """Returns (``depth`` tensors ``[B, S, N, 2C]``, patch_start_idx)."""
        B, S, C_in, H, W = images.shape
        if C_in != 3:
            raise ValueError(f"expected 3 colour channels, got images of shape {tuple(images.shape)}")
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        tokens, pos = self.embed(images)
        N, C = tokens.shape[1], tokens.shape[2]
        pos_global = pos.reshape(B, S * N, 2)
        outputs = []
        for i in range(self.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, N, C), pos=pos)
            frame_out = tokens.reshape(B, S, N, C)
            tokens = self.global_blocks[i](tokens.reshape(B, S * N, C), pos=pos_global)
            global_out = tokens.reshape(B, S, N, C)
            outputs.append(torch.cat([frame_out, global_out], dim=-1))
        return outputs, self.patch_start_idx
