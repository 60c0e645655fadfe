"""Activation statistics of the float model over the calibration scenes, per quantized Linear,
shardable across ``torchrun`` processes (torch.distributed).

The statistics are the ones the calibration's choices start from (:mod:`.awq`, :mod:`.tokens`):
at every candidate Linear's input, over the rows the token rule keeps, the row count, the
per-channel mean ``|x|`` (AWQ's ``s = mean|x|^a``) and max ``|x|`` (activation ranges); over the
special rows it leaves out, their count and the compensation rows (mean and rank-k PCA).

Every statistic is kept as something a reduction merges, so scene ``i`` can be run by rank
``i % world_size`` and the ranks' partial results summed: counts and per-channel ``sum|x|`` and
the special rows' ``sum x`` and ``sum x x^T`` (float64) by ``all_reduce(SUM)``, ``max|x|`` by
``all_reduce(MAX)``. The PCA is not a reduction, so it is computed after the merge from the merged
second moments (eigenvectors of ``E[x x^T] - mu mu^T``) instead of an SVD of the gathered rows as
:func:`~qvggt_deploy.quant.tokens.compensation_rows` does; both give the same rows up to rounding
and the sign of each direction (fixed here: largest entry positive).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from qvggt_deploy.log import progress
from qvggt_deploy.quant.capture import capture_inputs
from qvggt_deploy.quant.stream import BlockInput, CalibStream
from qvggt_deploy.quant.tokens import DEFAULT_DIRECTIONS, split_rows

KIND = "qvggt activation statistics"
STAT_FIELDS = ("count", "abs_sum", "absmax", "special_count", "special_sum", "special_outer")


class _Accumulator:
    """Per-Linear sums over the rows this process sees (float64, merged by reductions)."""

    def __init__(self, width: int, device):
        f64 = dict(dtype=torch.float64, device=device)
        self.t = {"count": torch.zeros((), **f64), "abs_sum": torch.zeros(width, **f64),
                  "absmax": torch.zeros(width, **f64), "special_count": torch.zeros((), **f64),
                  "special_sum": torch.zeros(width, **f64), "special_outer": torch.zeros(width, width, **f64)}

    def add(self, kept: torch.Tensor, special: torch.Tensor) -> None:
        k, s = kept.detach().double(), special.detach().double()
        t = self.t
        t["count"] += k.shape[0]
        if k.shape[0]:
            t["abs_sum"] += k.abs().sum(0)
            torch.maximum(t["absmax"], k.abs().amax(0), out=t["absmax"])
        t["special_count"] += s.shape[0]
        t["special_sum"] += s.sum(0)
        t["special_outer"] += s.T @ s


def _layer_rows(stream: CalibStream, unit, token_filter: bool) -> Dict[str, List[tuple]]:
    """(kept rows, special rows) of each Linear of ``unit``, per scene of the stream."""
    model = stream.model
    if unit.kind == "camera":
        got = stream.linear_inputs(unit.linears)
        return {n: [(x.reshape(-1, x.shape[-1]), x.new_zeros(0, x.shape[-1])) for x in xs] for n, xs in got.items()}
    inputs: List[BlockInput] = stream.unit_inputs(unit)
    block = model.get_submodule(unit.name)
    with capture_inputs({n: model.get_submodule(n) for n in unit.linears}) as got:
        for inp in inputs:
            block(inp.x, pos=inp.pos)
    return {n: [split_rows(x, i.tokens_per_frame, i.num_special if token_filter else 0) for x, i in zip(xs, inputs)]
            for n, xs in got.items()}


@torch.no_grad()
def collect_statistics(model: nn.Module, scenes: Sequence[torch.Tensor], token_filter: bool = True,
                       comp_directions: int = DEFAULT_DIRECTIONS, rank: int = 0, world_size: int = 1
                       ) -> Dict[str, Dict[str, torch.Tensor]]:
    """Per-Linear activation statistics of the float ``model`` over ``scenes``.

    Args:
        model: a float VGGT (not modified).
        scenes: calibration images, one ``[B, S, 3, H, W]`` per scene (all of them on every rank,
            on any device: only this rank's are moved to the model's).
        token_filter: leave the special rows out of the kept-row statistics (the token rule).
        comp_directions: principal directions k of the compensation rows.
        rank, world_size: this process's shard (``torch.distributed`` initialised when
            ``world_size > 1``); it runs scenes ``i % world_size == rank``; every rank returns the
            merged statistics.

    Returns:
        ``{layer: {count, abs_mean [K], absmax [K], special_count, comp [2k+1, K]}}`` (counts
        int64, the rest float32; ``comp`` is ``[0, K]`` for a Linear without special rows).
    """
    device = next(model.parameters()).device
    own = [s.to(device) for i, s in enumerate(scenes) if i % world_size == rank]  # the others stay where they are
    stream = CalibStream(model, own)
    accs: Dict[str, _Accumulator] = {}
    desc = f"activation statistics (rank {rank})" if world_size > 1 else "activation statistics"
    for unit in progress(stream.units, desc=desc):
        for name, pairs in _layer_rows(stream, unit, token_filter).items():
            acc = accs.setdefault(name, _Accumulator(model.get_submodule(name).in_features, device))
            for kept, special in pairs:
                acc.add(kept, special)
        stream.advance(unit)
    if world_size > 1:
        _all_reduce(accs)
    return {name: _finish(acc.t, comp_directions) for name, acc in accs.items()}


def _all_reduce(accs: Dict[str, _Accumulator]) -> None:
    import torch.distributed as dist

    for name in sorted(accs):  # the same order on every rank
        for key in STAT_FIELDS:
            dist.all_reduce(accs[name].t[key], op=dist.ReduceOp.MAX if key == "absmax" else dist.ReduceOp.SUM)


def _finish(t: Dict[str, torch.Tensor], k: int) -> Dict[str, torch.Tensor]:
    n, m = t["count"], t["special_count"]
    out = {"count": n.long(), "abs_mean": (t["abs_sum"] / n.clamp_min(1)).float(), "absmax": t["absmax"].float(),
           "special_count": m.long()}  # int64: float32 counts stop being exact past 2^24 rows
    out["comp"] = (comp_from_moments(m, t["special_sum"], t["special_outer"], k).float() if m > 0
                   else t["abs_sum"].new_zeros(0, t["abs_sum"].shape[0]).float())
    return out


def comp_from_moments(m: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, k: int) -> torch.Tensor:
    """Compensation rows (:func:`~qvggt_deploy.quant.tokens.compensation_rows`) of ``m`` rows from
    their sum ``s1 [K]`` and sum of outer products ``s2 [K, K]``: ``[mu, mu +- a sigma_j u_j]``
    with ``(sigma_j^2, u_j)`` the top-k eigenpairs of the population covariance."""
    mu = s1 / m
    cov = s2 / m - torch.outer(mu, mu)
    evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)  # ascending
    a = math.sqrt((2 * k + 1) / 2.0)
    rows = [mu]
    for j in range(k):
        if j < evals.numel():
            u = evecs[:, -1 - j]
            u = u * torch.sign(u[u.abs().argmax()])
            sigma = evals[-1 - j].clamp_min(0).sqrt()
        else:
            sigma, u = mu.new_zeros(()), mu.new_zeros(mu.shape)
        rows += [mu + a * sigma * u, mu - a * sigma * u]
    return torch.stack(rows)


def save_statistics(stats: Dict[str, Dict[str, torch.Tensor]], path, metadata: Optional[Dict[str, str]] = None,
                    force: bool = False) -> None:
    """``<layer>.<statistic>`` tensors in one safetensors file, replaced whole."""
    from safetensors.torch import save_file

    from qvggt_deploy.fileio import atomic_path

    flat = {f"{name}.{key}": v.contiguous() for name, d in stats.items() for key, v in d.items()}
    with atomic_path(path, ours=is_stats_file, force=force) as tmp:
        save_file(flat, str(tmp), metadata={**(metadata or {}), "kind": KIND})


def is_stats_file(path) -> bool:
    """A file :func:`save_statistics` wrote (replaced without --force)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("kind") == KIND
    except (OSError, SafetensorError):  # not a safetensors file at all
        return False
