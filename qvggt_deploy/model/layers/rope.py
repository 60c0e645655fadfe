"""2D rotary position embedding of VGGT's aggregator (frequency base 100).

References: Su et al., RoFormer (rotary embeddings); VGGT (arXiv 2503.11651) applies them in 2D.

Layout for a head vector of size D: channels ``[0, D/2)`` are rotated by the row (y) position,
``[D/2, D)`` by the column (x) position. Within each half of size d, frequencies are
``1 / base^(2k/d)``, k = 0..d/2-1, and the rotation uses the "rotate-half" (GPT-NeoX) pairing
``(v[i], v[i + d/2])``, not interleaved pairs. Position 0 is the identity rotation.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def patch_positions(batch: int, rows: int, cols: int, num_special: int,
                    device=None) -> torch.Tensor:
    """Integer (y, x) positions for one frame's tokens, ``[batch, num_special + rows*cols, 2]``.

    Patch (r, c) gets (r + 1, c + 1); the ``num_special`` leading tokens (camera, registers) get
    (0, 0). Built with arange/meshgrid (no cartesian_prod) so the graph exports to ONNX.
    """
    ys = torch.arange(rows, device=device)
    xs = torch.arange(cols, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    pos = torch.stack([grid_y.reshape(-1), grid_x.reshape(-1)], dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=pos.dtype, device=device)
    pos = torch.cat([special, pos], dim=0)
    return pos.unsqueeze(0).expand(batch, -1, -1)


class RotaryPositionEmbedding2D(nn.Module):
    """Applies 2D RoPE to ``tokens [B, heads, N, D]`` given ``positions [B, N, 2]`` (y, x)."""

    def __init__(self, frequency: float = 100.0):
        super().__init__()
        self.base_frequency = float(frequency)

    def tables(self, dim: int, max_position: int, device, dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables ``[max_position, dim]`` for one half (computed in fp32, then cast)."""
        exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim
        inv_freq = 1.0 / (self.base_frequency ** exponents)
        positions = torch.arange(max_position, device=device, dtype=torch.float32)
        angles = positions[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    @staticmethod
    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        c = cos[pos][:, None]  # [B, 1, N, d]
        s = sin[pos][:, None]
        return x * c + self.rotate_half(x) * s

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        half = tokens.shape[-1] // 2
        max_position = int(positions.max()) + 1
        cos, sin = self.tables(half, max_position, tokens.device, tokens.dtype)
        y_part, x_part = tokens[..., :half], tokens[..., half:]
        y_part = self._rotate(y_part, positions[..., 0], cos, sin)
        x_part = self._rotate(x_part, positions[..., 1], cos, sin)
        return torch.cat([y_part, x_part], dim=-1)
