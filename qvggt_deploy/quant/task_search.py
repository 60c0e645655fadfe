"""Task-aware scale search: AWQ's candidates, chosen by what the heads see (the QVGGT step).

For one scale group (block-wise, sequentially, so only one block's inputs are held):

1. every candidate ``(a, c)`` (smoothing exponent x layer clip ratio) gets its reconstruction
   error ``rec`` on the probe (the inspected module's output MSE, token rule applied);
2. the ``top_m`` best by ``rec``, plus ``(0, 1)`` = RTN as the yardstick, are installed one at a
   time and the rest of the model (later blocks + heads, from the stream's cached state) is run
   on the calibration scenes: ``dtask`` is the task loss (:mod:`~qvggt_deploy.quant.objective`:
   camera, depth, points vs FP32 and the change of cross-head consistency) minus the task loss
   with the group left in float;
3. the pick minimises ``w_rec * rec / rec_rtn + w_task * dtask / dtask_rtn``.

Cost: ``grid * len(clips)`` probe runs (cheap: one module on cached inputs) and ``top_m + 1``
rest-of-model runs per group. ``top_m = 0`` is reconstruction-only (AWQ with a clip grid);
``top_m = grid * len(clips)`` scores everything on the heads. The trade-off is measured in
``benchmarks/results/`` and discussed in docs/method.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from qvggt_deploy.quant.awq import smoothing_factors, weighted_abs_mean
from qvggt_deploy.quant.search import Probe, UnitSpec, trial_error

EPS = 1e-12


@dataclass(frozen=True)
class TaskSearchOptions:
    """Grid and weights. Defaults: 20 exponents, clips (1, 0.95, 0.9, 0.85), top 3 on the heads,
    reconstruction and task weighted 1:1, heads run on the first 2 calibration scenes (the heads
    dominate the cost: a DPT head costs more than all aggregator blocks at 224 px)."""

    grid: int = 20
    clips: Tuple[float, ...] = (1.0, 0.95, 0.9, 0.85)
    top_m: int = 3
    w_rec: float = 1.0
    w_task: float = 1.0
    scenes: int = 2


@dataclass(eq=False)  # identity comparison (holds a tensor)
class Candidate:
    a: float
    clip: float
    s: torch.Tensor
    rec: float
    dtask: Optional[float] = None
    score: Optional[float] = None

    def summary(self) -> dict:
        return {"a": self.a, "clip": self.clip, "rec": self.rec, "dtask": self.dtask, "score": self.score}


@torch.no_grad()
def search_group(model: nn.Module, probe: Probe, layer: str, spec: UnitSpec, opts: TaskSearchOptions,
                 task: Optional[Callable[[], float]] = None, task_float: Optional[float] = None,
                 smooth: bool = True) -> Tuple[Candidate, List[Candidate]]:
    """Pick ``(a, clip)`` for the group feeding ``layer``; returns (pick, scored candidates).

    Args:
        task: runs the rest of the model as it now holds ``layer`` and returns the task loss;
            None (or ``top_m`` 0) for reconstruction only.
        task_float: the task loss with the group in float (the baseline of ``dtask``).
        smooth: search the exponent (False: ``a = 0`` only, a clip search).
    """
    x_mean = weighted_abs_mean(probe.rows, probe.row_weights)
    exponents = [i / opts.grid for i in range(opts.grid)] if smooth else [0.0]
    cands: List[Candidate] = []
    for a in exponents:
        s = smoothing_factors(x_mean, a)
        for c in opts.clips:
            cands.append(Candidate(a, c, s, trial_error(model, probe, layer, spec, s, c)))
    rtn = next((c for c in cands if c.a == 0.0 and c.clip == 1.0), cands[0])
    ranked = sorted(cands, key=lambda c: c.rec)
    if task is None or opts.top_m <= 0 or task_float is None:
        return ranked[0], ranked
    finalists = ranked[:opts.top_m] + ([rtn] if rtn not in ranked[:opts.top_m] else [])
    for c in finalists:
        _, loss = trial_error(model, probe, layer, spec, c.s, c.clip, task=task)
        c.dtask = loss - task_float
    if rtn.dtask <= EPS:  # the heads do not see this group at all: reconstruction decides
        for c in finalists:
            c.score = c.rec / max(rtn.rec, EPS)
    else:
        for c in finalists:
            c.score = opts.w_rec * c.rec / max(rtn.rec, EPS) + opts.w_task * c.dtask / rtn.dtask
    return min(finalists, key=lambda c: c.score), finalists
