"""Static per-tensor INT8 activation scales for the W8A8/W4A8 options.

One scale per quantized Linear input, searched over the calibration rows the token rule leaves
(patch tokens + compensation rows, weighted; see :mod:`~qvggt_deploy.quant.tokens`): special
tokens bypass the activation quantizer when deployed, so their outliers must not set the range.

- ``mse``: the scale ``r * absmax / qmax`` over a grid of ``r`` minimising the weighted squared
  quantize-dequantize error (clipping a few outliers usually beats absmax).
- ``percentile``: ``percentile(|x|) / qmax`` (weighted quantile over all entries).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.fake import fake_quant_activation
from qvggt_deploy.quant.quantizer import SCALE_FLOOR

ACT_CALIB_METHODS = ("mse", "percentile")


def subsample_rows(rows: torch.Tensor, weights: torch.Tensor, max_rows: int, seed: int = 0
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_rows`` rows: weight-1 rows (tokens) sampled uniformly without replacement and
    up-weighted to keep their total; heavier rows (compensation rows) always kept."""
    if rows.shape[0] <= max_rows:
        return rows, weights
    plain = (weights == 1).nonzero().squeeze(1)
    heavy = (weights != 1).nonzero().squeeze(1)
    n = max(1, max_rows - heavy.numel())
    if n >= plain.numel():
        return rows, weights
    g = torch.Generator().manual_seed(seed)
    pick = plain[torch.randperm(plain.numel(), generator=g)[:n].sort().values.to(plain.device)]
    idx = torch.cat([pick, heavy])
    w = weights[idx].clone()
    w[: pick.numel()] = plain.numel() / n
    return rows[idx], w


@torch.no_grad()
def calibrate_act_scale(rows: torch.Tensor, weights: Optional[torch.Tensor] = None, bits: int = 8,
                        method: str = "mse", percentile: float = 99.99, grid: int = 40,
                        max_rows: int = 8192, seed: int = 0) -> float:
    """Static symmetric scale for the activations ``rows [T, K]`` (row ``weights [T]``).

    Args:
        rows: activation rows at a Linear's input.
        weights: per-row weights. Defaults to all ones.
        bits: activation bits. Defaults to 8.
        method: ``mse`` or ``percentile``. Defaults to ``mse``.
        percentile: for ``percentile``. Defaults to 99.99.
        grid: number of range ratios tried by ``mse`` (1/grid .. 1). Defaults to 40.
        max_rows: rows sampled for the search. Defaults to 8192.
        seed: sampling seed. Defaults to 0.
    """
    if method not in ACT_CALIB_METHODS:
        raise QvggtError(f"unknown activation calibration {method!r}; use one of {ACT_CALIB_METHODS}")
    if rows.dim() != 2 or rows.shape[0] == 0:
        raise QvggtError(f"activation calibration needs rows [T, K], got {tuple(rows.shape)}")
    weights = rows.new_ones(rows.shape[0]) if weights is None else weights.to(rows)
    rows, weights = subsample_rows(rows.float(), weights.float(), max_rows, seed)
    qmax = 2 ** (bits - 1) - 1
    absmax = float(rows.abs().max())
    if absmax == 0.0:
        return SCALE_FLOOR
    if method == "percentile":
        vals = rows.abs().reshape(-1)
        w = weights[:, None].expand_as(rows).reshape(-1)
        order = vals.argsort()
        cum = w[order].cumsum(0)
        i = int(torch.searchsorted(cum, cum[-1] * percentile / 100.0).clamp_max(vals.numel() - 1))
        return max(float(vals[order[i]]) / qmax, SCALE_FLOOR)
    best, best_err = absmax / qmax, float("inf")
    for i in range(grid, 0, -1):
        scale = max(absmax * i / grid / qmax, SCALE_FLOOR)
        err = float(((fake_quant_activation(rows, bits, "per_tensor", scale) - rows) ** 2).sum(-1) @ weights)
        if err < best_err:
            best, best_err = scale, err
    return best
