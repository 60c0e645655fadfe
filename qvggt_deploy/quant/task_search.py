"""Task-aware scale search: AWQ's candidates, chosen by what the heads see (the QVGGT step).

For one scale group (block-wise, sequentially, so only one block's inputs are held):

1. every candidate ``(a, c)`` (smoothing exponent x layer clip ratio, by default ``c = 1`` only)
   gets its reconstruction error ``rec`` on the probe (the inspected module's output MSE, token
   rule applied);
2. the ``top_m`` best by ``rec``, plus ``(0, 1)`` = RTN as the yardstick (and, unless
   ``rtn_finalist`` is off, as a finalist), get the per-group clip
   search (so they are what would be deployed), are installed one at a time and the rest of the
   model (later blocks + heads, from the stream's cached state) is run on the calibration
   scenes: ``dtask`` is the task loss (:mod:`~qvggt_deploy.quant.objective`:
   camera, depth, points vs FP32 and the per-pixel change of cross-head consistency) minus the
   task loss with the group left in float;
3. the pick minimises ``w_rec * rec / rec_rtn + w_task * dtask / dtask_rtn``
   (:func:`score_finalists`).

Cost: ``grid * len(clips)`` probe runs (cheap: one module on cached inputs), ``top_m + 1`` clip
searches and ``top_m + 1`` rest-of-model runs per group. ``top_m = 0`` is reconstruction-only (AWQ with a clip grid);
``top_m = grid * len(clips)`` scores everything on the heads. The trade-off is measured in
``benchmarks/results/`` and discussed in docs/method.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from qvggt_deploy.quant.awq import smoothing_factors, weighted_abs_mean
from qvggt_deploy.quant.phases import PhaseClock
from qvggt_deploy.quant.search import Probe, UnitSpec, trial_error

EPS = 1e-12


@dataclass(frozen=True)
class TaskSearchOptions:
    """Grid and weights. Defaults: 20 exponents, no layer clip grid (clips (1.0,): the per-group
    clip search refines the finalists instead; a layer-wide clip grid made held-out depth and
    points worse, see docs/method.md), the best candidate against RTN on the heads,
    reconstruction and task weighted 1:1, heads run on the first calibration scene, the depth and
    point heads on its first ``dense_frames`` frames (0: all; the camera head always sees every
    frame). The heads dominate the cost: a DPT head costs more than all aggregator blocks at
    224 px; more finalists or scenes cost time without a measured gain, see docs/method.md."""

    grid: int = 20
    clips: Tuple[float, ...] = (1.0,)
    top_m: int = 1
    w_rec: float = 1.0
    w_task: float = 1.0
    scenes: int = 1
    dense_frames: int = 2
    # Whether RTN may win the pick. Scored on one task scene it won 28-39 of 71 groups at W4A8 and
    # W3A16, where reconstruction alone picks a = 0 for 4-5; off, RTN only normalises dtask and the
    # pick stays among the top_m (docs/method.md, Results).
    rtn_finalist: bool = True


@dataclass(eq=False)  # identity comparison (holds a tensor)
class Candidate:
    a: float
    clip: float
    s: torch.Tensor
    rec: float
    ratios: Optional[torch.Tensor] = None  # per-group clip ratios from the refinement
    dtask: Optional[float] = None
    score: Optional[float] = None

    @property
    def effective_clip(self):
        """What the layer is quantized with: the layer clip, times the refined ratios if any."""
        return self.clip if self.ratios is None else self.clip * self.ratios

    def summary(self) -> dict:
        out = {"a": self.a, "clip": self.clip, "rec": self.rec, "dtask": self.dtask, "score": self.score}
        if self.ratios is not None:
            out["clip_ratio_mean"] = float(self.ratios.mean())
        return out


@torch.no_grad()
def search_group(model: nn.Module, probe: Probe, layer: str, spec: UnitSpec, opts: TaskSearchOptions,
                 task: Optional[Callable[[], float]] = None, task_float: Optional[float] = None,
                 smooth: bool = True, refine: Optional[Callable[[torch.Tensor, float], torch.Tensor]] = None,
                 phases: Optional[PhaseClock] = None) -> Tuple[Candidate, List[Candidate]]:
    """Pick ``(a, clip)`` for the group feeding ``layer``; returns (pick, finalists).

    Args:
        task: runs the rest of the model as it now holds ``layer`` and returns the task loss;
            None (or ``top_m`` 0) for reconstruction only.
        task_float: the task loss with the group in float (the baseline of ``dtask``).
        smooth: search the exponent (False: ``a = 0`` only, a clip search).
        refine: (smoothing factors, layer clip) -> per-group clip ratios inside that clip (the clip
            search); applied to the finalists before they are scored, so the heads judge what will
            be deployed.
        phases: accumulates seconds of the scale search, clip search and finalist scoring.
    """
    phases = phases if phases is not None else PhaseClock()
    x_mean = weighted_abs_mean(probe.rows, probe.row_weights)
    exponents = [i / opts.grid for i in range(opts.grid)] if smooth else [0.0]
    cands: List[Candidate] = []
    with phases("scale search"):
        for a in exponents:
            s = smoothing_factors(x_mean, a)
            for c in opts.clips:
                cands.append(Candidate(a, c, s, trial_error(model, probe, layer, spec, s, c)))
    rtn = next((c for c in cands if c.a == 0.0 and c.clip == 1.0), cands[0])
    ranked = sorted(cands, key=lambda c: c.rec)
    heads = task is not None and opts.top_m > 0 and task_float is not None
    top = ranked[:opts.top_m if heads else 1]
    yardstick = [] if any(c is rtn for c in top) else [rtn]
    finalists = top + (yardstick if opts.rtn_finalist or not heads else [])
    heads = heads and len(finalists) > 1  # one finalist: the heads cannot change the pick
    scored = top + yardstick if heads else finalists  # on the heads, RTN is scored as the yardstick
    if refine is not None:
        with phases("clip search"):
            for c in scored:
                c.ratios = refine(c.s, c.clip)  # ratios inside the candidate's layer clip
                c.rec = trial_error(model, probe, layer, spec, c.s, c.effective_clip)
    if not heads:
        return min(finalists, key=lambda c: c.rec), finalists
    with phases("finalist scoring"):
        for c in scored:
            _, loss = trial_error(model, probe, layer, spec, c.s, c.effective_clip, task=task)
            c.dtask = loss - task_float
    return score_finalists(finalists, rtn, opts), finalists


def score_finalists(finalists: List[Candidate], rtn: Candidate, opts: TaskSearchOptions) -> Candidate:
    """Set each finalist's ``score`` (lower is better) and return the best.

    ``score = w_rec * rec / rec_rtn + w_task * dtask / dtask_rtn``: both terms relative to RTN, so
    the weights trade like for like whatever the layer's scale. If RTN does not move the task
    loss (``dtask_rtn <= 0``), the heads do not see this group and reconstruction alone decides.
    """
    if rtn.dtask is None or rtn.dtask <= EPS:
        for c in finalists:
            c.score = c.rec / max(rtn.rec, EPS)
    else:
        for c in finalists:
            c.score = opts.w_rec * c.rec / max(rtn.rec, EPS) + opts.w_task * c.dtask / rtn.dtask
    return min(finalists, key=lambda c: c.score)
