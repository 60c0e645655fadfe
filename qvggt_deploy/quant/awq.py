"""AWQ-style activation-aware scale search and clipping search (the baseline QVGGT builds on).

References: Lin et al., AWQ (arXiv 2306.00978); ``mit-han-lab/llm-awq`` ``awq/quantize/auto_scale.py``
(``_search_module_scale``) and ``auto_clip.py``. Search and apply are apart: these functions
return factors and ratios; :mod:`~qvggt_deploy.quant.calibrate` folds them
(:func:`~qvggt_deploy.quant.recipe.fold_scale_group`) and quantizes.

Scale search, per scale group: ``s = mean|x|^a`` per input channel (over the probe's rows, i.e.
the token rule's rows when filtering is on), normalised by ``sqrt(max s * min s)``, for
``a = 0, 1/n, ..., (n-1)/n``; each candidate fake-quantizes ``W diag(s)``, feeds ``x / s`` and
scores the inspected module's output MSE; the model is restored after every trial. ``a = 0`` is
RTN, so the search never does worse than RTN on its own objective.

Clip search, per Linear: for every output channel and input group, the range ``r * absmax``
(``r = 1, 1 - 1/n, ..., 1 - max_shrink + 1/n``, i.e. down to 0.55 by default), chosen by
coordinate descent over the groups to minimise the whole output channel's error on sampled rows
(llm-awq scores each group alone; see :func:`search_clip`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
from torch import nn

from qvggt_deploy.quant import quantizer
from qvggt_deploy.quant.activation import subsample_rows
from qvggt_deploy.quant.search import Probe, UnitSpec, trial_error

SCALE_MIN = 1e-4


@dataclass
class ScaleChoice:
    """Result of a scale search for one group: exponent, factors ``[K]``, loss per grid point."""

    a: float
    s: torch.Tensor
    losses: List[float] = field(default_factory=list)


def weighted_abs_mean(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-channel mean |x| over ``rows [T, K]`` with row ``weights [T]``."""
    return (weights.to(rows) @ rows.abs()) / weights.sum().clamp_min(1e-12)


def smoothing_factors(x_mean: torch.Tensor, a: float) -> torch.Tensor:
    """AWQ's ``s = mean|x|^a``, normalised so that ``max(s) * min(s) = 1``."""
    s = x_mean.float().pow(a).clamp_min(SCALE_MIN)
    return s / (s.max() * s.min()).sqrt()


@torch.no_grad()
def search_scale(model: nn.Module, probe: Probe, layer: str, spec: UnitSpec, n_grid: int = 20) -> ScaleChoice:
    """Grid search of the smoothing exponent for the group feeding ``layer`` (llm-awq loop)."""
    x_mean = weighted_abs_mean(probe.rows, probe.row_weights)
    best, best_loss, losses = None, float("inf"), []
    for i in range(n_grid):
        a = i / n_grid
        s = smoothing_factors(x_mean, a)
        loss = trial_error(model, probe, layer, spec, s)
        losses.append(loss)
        if loss < best_loss:
            best, best_loss = ScaleChoice(a, s), loss
    best.losses = losses
    return best


@torch.no_grad()
def search_clip(w: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, bits: int, group: int,
                n_grid: int = 20, max_shrink: float = 0.5, max_rows: int = 512, channel_batch: int = 256,
                sweeps: int = 2, seed: int = 0, base: float = 1.0) -> torch.Tensor:
    """Per-(output channel, group) clip ratios ``[N, K/group]`` for weight ``w [N, K]`` (already
    smoothed) on input ``rows [T, K]``, exact fp16 scales, inside a layer clip ``base`` (the
    weights are quantized with ``base * r``; the ratios ``r`` are returned).

    Unlike llm-awq's ``auto_clip_layer``, which scores each group by its own partial output
    error, a group's ratio is chosen to minimise the *whole* output channel's error given the
    other groups' current errors (coordinate descent, ``sweeps`` passes from ratio 1). Clipping
    errors are biased (large weights shrink); with non-zero-mean inputs (GELU outputs, LayerNorm
    bias) they add up across groups, which per-group scoring ignores: on VGGT that made the
    depth and point heads worse than RTN.
    """
    rows, weights = subsample_rows(rows.float(), weights.float(), max_rows, seed)
    N, K = w.shape
    G = K // group
    x = rows.reshape(-1, G, group)
    wt = weights / weights.sum()
    steps = [1.0 - i / n_grid for i in range(max(1, int(max_shrink * n_grid)))]
    ratios = torch.ones(N, G, device=w.device)
    for start in range(0, N, channel_batch):
        wb = w[start:start + channel_batch].float()
        n = wb.shape[0]
        wg = wb.reshape(n, G, group)
        # partial output errors e[g][n, r, t] of every candidate ratio, one contiguous block per group
        errs = torch.stack([torch.einsum("ngk,tgk->gnt", quantizer.fake_quantize(wb, bits, group, clip=base * r)
                                         .reshape(n, G, group) - wg, x) for r in steps], dim=2)
        # sum_t wt (o + e_r)^2 = sum_t wt o^2 + 2 sum_t wt o e_r + sum_t wt e_r^2: the first term is
        # the same for every ratio, the last is fixed per (group, ratio); only the middle one moves
        own = (errs * errs) @ wt  # [G, n, R]
        cols = torch.arange(n, device=w.device)
        pick = torch.zeros(n, G, dtype=torch.long, device=w.device)
        total = errs[:, :, 0].sum(0)  # [n, T]: whole-channel error with every group at ratio 1
        for _ in range(sweeps):
            for g in range(G):
                eg = errs[g]  # [n, R, T]
                others = total - eg[cols, pick[:, g]]  # [n, T]
                cross = torch.bmm(eg, (others * wt).unsqueeze(-1)).squeeze(-1)  # [n, R]
                best = (2 * cross + own[g]).argmin(1)
                pick[:, g] = best
                total = others + eg[cols, best]
        ratios[start:start + n] = torch.tensor(steps, device=w.device)[pick]
    return ratios
