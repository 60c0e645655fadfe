"""Camera head: iterative refinement of the 9-d pose encoding from the camera tokens.

The last aggregator layer's camera token (frame || global, 2C wide) is normalised once; then,
for ``iterations`` rounds, the previous raw (pre-activation) estimate is embedded, an adaLN
modulation ``gate * (norm(t) * (1 + scale) + shift) + t`` conditions the tokens, a transformer
trunk attends over the S cameras of a sample, and an MLP predicts an additive update.
Pose encoding (absT_quaR_FoV): ``[t_x, t_y, t_z, q_x, q_y, q_z, q_w, fov_h, fov_w]``.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from qvggt_deploy.model.heads.head_act import activate_pose
from qvggt_deploy.model.layers.block import Block
from qvggt_deploy.model.layers.mlp import Mlp

POSE_DIM = 9


class CameraHead(nn.Module):
    def __init__(self, dim_in: int, trunk_depth: int = 4, num_heads: int = 16,
                 mlp_ratio: float = 4.0, init_values: float = 0.01, iterations: int = 4):
        super().__init__()
        self.iterations = iterations
        self.trunk = nn.Sequential(*[Block(dim_in, num_heads, mlp_ratio, init_values=init_values)
                                     for _ in range(trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in, bias=True))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_DIM)

    def forward(self, tokens_list: List[torch.Tensor], iterations: int = None) -> List[torch.Tensor]:
        """Returns the activated pose encodings ``[B, S, 9]`` of every iteration (last = final)."""
        tokens = self.token_norm(tokens_list[-1][:, :, 0])
        B, S, _ = tokens.shape
        raw = None
        outputs = []
        for _ in range(iterations or self.iterations):
            if raw is None:
                cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                cond = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            h = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            for block in self.trunk:
                h = block(h)
            delta = self.pose_branch(self.trunk_norm(h))
            raw = delta if raw is None else raw + delta
            outputs.append(activate_pose(raw))
        return outputs
