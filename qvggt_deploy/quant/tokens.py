"""Token filtering with camera-information compensation (the exact rule: docs/method.md, "Token rule").

Why: the camera and register tokens (CLS and registers in the DINOv2 ViT) are 5 of ~260
(tiny) to ~1370 (VGGT-1B) tokens per frame but carry outlier activations; left in, they set
AWQ's per-channel statistics, activation ranges and the reconstruction losses, and the patch
tokens that make depth and points pay for it. Dropped outright, the camera token's information
(the camera head reads nothing else) is lost to every objective. So, at every quantized Linear of
a ViT or aggregator block:

1. special rows ``t % tokens_per_frame < 5`` of the Linear's input are left out of every
   statistic and loss that picks quantization parameters;
2. their calibration rows ``F [M, K]`` give ``mu = mean(F)`` and the top-``k`` principal
   directions ``u_j`` with standard deviations ``sigma_j`` (PCA of ``F - mu``);
3. ``R = 2k + 1`` compensation rows ``[mu, mu +- a sigma_j u_j]``, ``a = sqrt(R / 2)``, whose
   equal-weight mean is ``mu`` and covariance ``sum_j sigma_j^2 u_j u_j^T`` (the rank-k PCA
   covariance of F), stand in for them: with k = 2, R = 5 = the special tokens per frame, so
   each frame's 5 special rows are replaced by the 5 compensation rows, one for one;
4. the compensation rows are stored per layer (``comp.<layer>`` ``[R, K]``, in the coordinates
   the deployed layer sees: after smoothing) so the export's calibration graph can insert them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.fake import special_token_mask

DEFAULT_DIRECTIONS = 2  # k: R = 2k + 1 = 5 compensation rows = the 5 special tokens of a frame


def special_rows_mask(num_tokens: int, tokens_per_frame: int, num_special: int,
                      device=None) -> torch.Tensor:
    """``[num_tokens]`` bool, True for special tokens (all False when ``num_special`` is 0)."""
    if not num_special or not tokens_per_frame:
        return torch.zeros(num_tokens, dtype=torch.bool, device=device)
    return special_token_mask(num_tokens, tokens_per_frame, num_special, device)


def split_rows(x: torch.Tensor, tokens_per_frame: int, num_special: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``x [..., T, K]`` -> (kept rows ``[*, K]``, special rows ``[*, K]``)."""
    mask = special_rows_mask(x.shape[-2], tokens_per_frame, num_special, x.device)
    flat_mask = mask.expand(x.shape[:-1]).reshape(-1)
    rows = x.reshape(-1, x.shape[-1])
    return rows[~flat_mask], rows[flat_mask]


def compensation_rows(special: torch.Tensor, k: int = DEFAULT_DIRECTIONS) -> torch.Tensor:
    """``[2k+1, K]`` rows with the mean and rank-k PCA covariance of ``special [M, K]``.

    Rows: ``mu``, then ``mu + a sigma_j u_j``, ``mu - a sigma_j u_j`` for j = 1..k (decreasing
    sigma), ``a = sqrt((2k+1)/2)``; ``sigma_j`` is the population standard deviation along
    ``u_j``. Directions beyond the rank of the data get sigma 0. Signs of ``u_j`` do not matter
    (rows come in +- pairs).
    """
    if special.dim() != 2 or special.shape[0] == 0:
        raise QvggtError(f"compensation needs special-token rows [M, K] with M > 0, got {tuple(special.shape)}")
    f = special.detach().double()
    mu = f.mean(dim=0)
    centred = f - mu
    rows = [mu]
    if k > 0:
        _, sv, vh = torch.linalg.svd(centred, full_matrices=False)  # sv descending
        a = math.sqrt((2 * k + 1) / 2.0)
        for j in range(k):
            if j < sv.numel():
                sigma, u = sv[j] / math.sqrt(f.shape[0]), vh[j]
            else:
                sigma, u = mu.new_zeros(()), mu.new_zeros(mu.shape)
            rows += [mu + a * sigma * u, mu - a * sigma * u]
    return torch.stack(rows).to(special.dtype)


def stat_rows(xs: List[torch.Tensor], layouts: List[Tuple[int, int]], comp: Optional[torch.Tensor]
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The rows statistics and per-token losses are computed on, with their weights.

    Args:
        xs: a layer's input per scene, ``[..., T, K]``.
        layouts: ``(tokens_per_frame, num_special)`` per scene.
        comp: compensation rows ``[R, K]``, or None for no filtering (every row, weight 1).

    Returns:
        (rows ``[T', K]``, weights ``[T']``): kept rows weight 1, then the R compensation rows,
        each weighing ``M / R`` (M = special rows left out) so they count as the tokens they
        replace.
    """
    if comp is None:
        rows = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
        return rows, rows.new_ones(rows.shape[0])
    kept, n_special = [], 0
    for x, (tpf, ns) in zip(xs, layouts):
        k, s = split_rows(x, tpf, ns)
        kept.append(k)
        n_special += s.shape[0]
    kept_rows = torch.cat(kept)
    weights = torch.cat([kept_rows.new_ones(kept_rows.shape[0]),
                         kept_rows.new_full((comp.shape[0],), n_special / max(comp.shape[0], 1))])
    return torch.cat([kept_rows, comp.to(kept_rows)]), weights


def attention_with_virtual_queries(attn, x: torch.Tensor, pos: Optional[torch.Tensor],
                                   extra: torch.Tensor) -> torch.Tensor:
    """``attn`` on ``x [B, T, C]`` plus ``R`` virtual query rows ``extra [R, C]`` per sequence.

    Returns ``[B, T + R, C]``: the first T rows are exactly ``attn(x, pos)``; the virtual rows
    attend to the T real keys/values (never to each other, and no real token attends to them) at
    RoPE position (0, 0), the position of the special tokens they stand for. Mirrors
    ``model/layers/attention.py``; a test checks the real rows against it.
    """
    B, T, C = x.shape
    R = extra.shape[0]
    heads, hd = attn.num_heads, attn.head_dim
    qkv_x = attn.qkv(x)
    with no_token_layout(attn.qkv):
        qkv_e = attn.qkv(extra.to(x).unsqueeze(0).expand(B, R, C))
    qkv = torch.cat([qkv_x, qkv_e], dim=1).reshape(B, T + R, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.rope is not None and pos is not None:
        pe = torch.cat([pos, pos.new_zeros(B, R, 2)], dim=1)
        q, k = attn.rope(q, pe), attn.rope(k, pe)
    out = F.scaled_dot_product_attention(q, k[:, :, :T], v[:, :, :T])
    return attn.proj(out.transpose(1, 2).reshape(B, T + R, C))


class no_token_layout:
    """Within the block, a quantized Linear sees its rows as ordinary tokens (no special-token
    bypass): used for compensation rows, which stand in for special tokens *in calibration*."""

    def __init__(self, module):
        self.module = module
        self.saved = None

    def __enter__(self):
        self.saved = getattr(self.module, "tokens_per_frame", None)
        if hasattr(self.module, "tokens_per_frame"):
            self.module.tokens_per_frame = None
        return self.module

    def __exit__(self, *exc):
        if hasattr(self.module, "tokens_per_frame"):
            self.module.tokens_per_frame = self.saved
        return False
