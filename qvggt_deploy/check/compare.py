"""Accuracy comparison of backends, on Polygraphy's comparator.

A check is data: a list of runners (PyTorch float, PyTorch fake-quantized, ONNX Runtime files,
TensorRT engines) and a list of :class:`Comparison` pairs, each with per-output tolerances.
:func:`run_check` runs every runner on the same inputs (``Comparator.run``), compares each pair
with ``Comparator.compare_accuracy`` and a ``SimpleCompareFunc`` closure (``CompareFunc.simple``)
built from the pair's tolerances, and adds per-output error statistics and the task metrics (cameras, depth, points;
:mod:`qvggt_deploy.metrics`) of every runner against ground truth and against the float
reference. The result object is truthy when every gated comparison passed.

Tolerance kinds:

- ``exact``: the same computation on another runtime (PyTorch vs ORT, fake-quant vs the ORT QDQ
  graph in exact mode). Differences are fp32 reassociation, occasionally amplified through the
  network when a rounding step (fp16, INT8) lands on the other side: Polygraphy's elementwise
  rule, an element fails only when both ``|a - b| > atol`` and ``|a - b| > rtol |b|`` (it passes
  within ``max(atol, rtol |b|)``), atol 1e-4, rtol 1e-3.
- ``approx``: a different computation (int8 activations, TensorRT fp16): statistics and metrics
  are reported; the pair is gated only by its metric gates (:data:`GATES`: bounds on the task
  metrics against the reference runner's outputs), if it has any.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger

comparator = lazy_import("polygraphy.comparator")

logger = get_logger(__name__)

TOLERANCES = {
    # kind -> (atol per output, rtol per output); "" is Polygraphy's "every other output".
    "exact": ({"": 1e-4}, {"": 1e-3}),
}
# Task metrics reported per comparison (keys of qvggt_deploy.metrics.compute_metrics).
TASK_METRICS = ("auc@30", "rre_deg", "rte_deg", "abs_rel", "delta_1.25", "chamfer")
# Metric gates of approx pairs: metric -> which side of the bound passes ("max": value <= bound).
GATES = {"rre_deg": "max", "rte_deg": "max", "abs_rel": "max", "delta_1.25": "min", "chamfer": "max"}
# How close the same metric must be between two runners that compute the same thing.
METRIC_AGREEMENT = {"auc@30": 0.5, "rre_deg": 0.05, "rte_deg": 0.05, "abs_rel": 1e-3, "delta_1.25": 0.5,
                    "chamfer": 1e-3}


@dataclass(frozen=True)
class Comparison:
    """Compare runner ``candidate`` with runner ``reference`` (names as given to the runners)."""

    candidate: str
    reference: str
    kind: str = "exact"  # "exact" (gated elementwise) or "approx" (reported; gated by ``gates``)
    gates: Any = ()  # metric -> bound (a mapping, kept as sorted pairs); see GATES

    def __post_init__(self):
        if self.kind not in ("exact", "approx"):
            raise QvggtError(f"comparison kind must be exact or approx, got {self.kind!r}")
        gates = tuple(sorted(dict(self.gates).items()))
        unknown = [k for k, _ in gates if k not in GATES]
        if unknown:
            raise QvggtError(f"no gate for metric {unknown[0]!r}; gates: {', '.join(GATES)}")
        object.__setattr__(self, "gates", gates)


def apply_gates(gates, metrics: Mapping[str, float]) -> List[Dict[str, Any]]:
    """One verdict per gate; ``passed`` None where the metric is undefined (e.g. camera angles of a
    single frame)."""
    out = []
    for key, bound in gates:
        value = metrics.get(key, float("nan"))
        passed = None if math.isnan(value) else bool(value <= bound if GATES[key] == "max" else value >= bound)
        out.append({"metric": key, "side": GATES[key], "bound": bound, "value": value, "passed": passed})
    return out


def compare_func(kind: str):
    """The comparison closure of a tolerance kind: Polygraphy's ``SimpleCompareFunc`` (what
    ``CompareFunc.simple`` returns; the factory is deprecated in Polygraphy 0.53), elementwise,
    per-output tolerances."""
    atol, rtol = TOLERANCES.get(kind, ({"": math.inf}, {"": math.inf}))
    return comparator.SimpleCompareFunc(atol=atol, rtol=rtol, check_error_stat="elemwise",
                                        infinities_compare_equal=True)


@dataclass
class OutputStats:
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    passed: Optional[bool]  # None: not gated


@dataclass
class PairResult:
    comparison: Comparison
    outputs: Dict[str, OutputStats]
    metrics_vs_reference: Dict[str, float]
    passed: Optional[bool]
    gates: List[Dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed is not False


@dataclass
class CheckResult:
    """Everything a check produced; ``bool(result)`` is True when no gated comparison failed."""

    runners: List[str]
    pairs: List[PairResult]
    metrics_vs_ground_truth: Dict[str, Dict[str, float]] = field(default_factory=dict)
    agreement: List[Dict[str, Any]] = field(default_factory=list)
    inference_seconds: Dict[str, float] = field(default_factory=dict)
    samples: int = 0
    # Camera priors on the same scenes (they never look at the images): a runner's camera AUC
    # means something only beside theirs.
    camera_priors_vs_ground_truth: Dict[str, Dict[str, float]] = field(default_factory=dict)
    # runner -> per-sample output dicts (with run_check(keep_outputs=True)); not in to_dict()
    outputs: Dict[str, List[Dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return all(bool(p) for p in self.pairs) and all(a["passed"] for a in self.agreement)

    @property
    def gated(self) -> bool:
        """Whether anything was gated (an ``exact`` pair or a metric agreement): otherwise a
        truthy result only means that nothing could fail."""
        return any(p.passed is not None for p in self.pairs) or bool(self.agreement)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "passed": bool(self),
            "gated": self.gated,
            "samples": self.samples,
            "runners": self.runners,
            "inference_seconds": self.inference_seconds,
            "comparisons": [{
                "candidate": p.comparison.candidate, "reference": p.comparison.reference,
                "kind": p.comparison.kind, "passed": p.passed,
                "outputs": {k: vars(v) for k, v in p.outputs.items()},
                "metrics_vs_reference": p.metrics_vs_reference,
                "gates": p.gates,
            } for p in self.pairs],
            "metrics_vs_ground_truth": self.metrics_vs_ground_truth,
            "metric_agreement": self.agreement,
            "camera_priors_vs_ground_truth": self.camera_priors_vs_ground_truth,
        }


def _stats(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(b), 1e-12)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "max_rel": float(rel.max()),
            "mean_rel": float(rel.mean())}


def _mean_rows(rows: Sequence[Mapping[str, float]]) -> Dict[str, float]:
    keys = [k for k in TASK_METRICS if any(k in r for r in rows)]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r and not math.isnan(r[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def pseudo_ground_truth(outputs: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """The reference runner's outputs as ground truth for :func:`compute_metrics` (cameras from its
    ``pose_enc``, its depth and point map, every pixel valid)."""
    import torch

    from qvggt_deploy.metrics.summary import predicted_cameras

    depth = torch.from_numpy(np.asarray(outputs["depth"], np.float32)).reshape(*outputs["depth"].shape[1:4])
    S, H, W = depth.shape
    cams = predicted_cameras({"pose_enc": outputs["pose_enc"]}, (H, W))
    return {"depth": depth, "mask": torch.ones(S, H, W, dtype=torch.bool),
            "extrinsics": cams["extrinsics"].float(), "intrinsics": cams["intrinsics"].float(),
            "world_points": torch.from_numpy(np.asarray(outputs["world_points"], np.float32)).reshape(S, H, W, 3)}


def task_metrics(outputs: Mapping[str, np.ndarray], ground_truth) -> Dict[str, float]:
    """Camera, depth and point metrics of one output set against one ground truth."""
    from qvggt_deploy.metrics.summary import compute_metrics

    pred = {k: np.asarray(outputs[k]) for k in ("pose_enc", "depth", "world_points")}
    metrics = compute_metrics(pred, ground_truth, depthcam=False)
    return {k: float(metrics[k]) for k in TASK_METRICS if k in metrics}


def run_check(runners: Sequence[Any], feeds: Sequence[Dict[str, np.ndarray]], comparisons: Sequence[Comparison],
              ground_truth: Optional[Sequence[Any]] = None, agree: Sequence[tuple] = (),
              keep_outputs: bool = False) -> CheckResult:
    """Run ``runners`` on ``feeds`` and evaluate ``comparisons``.

    Args:
        runners: Polygraphy runners (distinct names).
        feeds: feed dicts ``{"images": [S,3,H,W]}``, one per sample.
        comparisons: pairs to compare (names must be runner names).
        ground_truth: optional per-sample ground truth (scenes), for metrics against it.
        agree: pairs ``(runner_a, runner_b)`` whose task metrics must agree (same computation),
            within :data:`METRIC_AGREEMENT`.
        keep_outputs: keep every runner's outputs in the result (for figures). Defaults to False.

    Returns:
        CheckResult.
    """
    names = [r.name for r in runners]
    if len(set(names)) != len(names):
        raise QvggtError(f"runner names must be distinct, got {names}")
    for c in comparisons:
        for n in (c.candidate, c.reference):
            if n not in names:
                raise QvggtError(f"comparison names runner {n!r}, not among {names}")
    runs = comparator.Comparator.run(list(runners), data_loader=list(feeds))
    for _, iterations in runs.items():  # Polygraphy's shape alignment views arrays: one frame's can be strided
        for it in iterations:
            for key in list(it.keys()):
                it[key] = np.ascontiguousarray(it[key])
    outputs = {name: [dict(it) for it in runs[name]] for name in names}
    seconds = {}
    for name in names:
        times = [it.runtime for it in runs[name] if getattr(it, "runtime", None) is not None]
        seconds[name] = float(np.median(times)) if times else float("nan")
    pairs = []
    for c in comparisons:
        i, j = names.index(c.candidate), names.index(c.reference)
        gated = c.kind == "exact"
        acc = comparator.Comparator.compare_accuracy(runs, comparisons=[(i, j)], compare_func=compare_func(c.kind))
        verdicts = list(acc)[0][(c.candidate, c.reference)] if gated else None
        stats = {}
        for out in OUTPUT_NAMES:
            per = [_stats(outputs[c.candidate][k][out], outputs[c.reference][k][out]) for k in range(len(feeds))]
            passed = all(bool(v[out]) for v in verdicts) if gated else None
            stats[out] = OutputStats(max(p["max_abs"] for p in per), float(np.mean([p["mean_abs"] for p in per])),
                                     max(p["max_rel"] for p in per), float(np.mean([p["mean_rel"] for p in per])), passed)
        rows = [task_metrics(outputs[c.candidate][k], pseudo_ground_truth(outputs[c.reference][k]))
                for k in range(len(feeds))]
        metrics = _mean_rows(rows)
        verdicts = apply_gates(c.gates, metrics)
        if gated:
            passed = all(s.passed for s in stats.values())
        else:
            decided = [v["passed"] for v in verdicts if v["passed"] is not None]
            passed = all(decided) if decided else None
        pairs.append(PairResult(c, stats, metrics, passed, verdicts))
    vs_gt, priors = {}, {}
    if ground_truth is not None:
        from qvggt_deploy.metrics.baselines import BASELINES, CAMERA_PRIORS

        for name in names:
            vs_gt[name] = _mean_rows([task_metrics(outputs[name][k], ground_truth[k]) for k in range(len(feeds))])
        for name in ("trivial",) + CAMERA_PRIORS:
            rows = [task_metrics({k: v.numpy() for k, v in BASELINES[name](scene).items()}, scene)
                    for scene in ground_truth if hasattr(scene, "intrinsics")]
            if rows:
                priors["identity" if name == "trivial" else name] = {
                    k: v for k, v in _mean_rows(rows).items() if k in ("auc@30", "rre_deg", "rte_deg")}
    agreement = []
    for a, b in agree:
        if a not in vs_gt or b not in vs_gt:
            continue
        for key, tol in METRIC_AGREEMENT.items():
            if key in vs_gt[a] and key in vs_gt[b]:
                va, vb = vs_gt[a][key], vs_gt[b][key]
                both_nan = math.isnan(va) and math.isnan(vb)
                delta = 0.0 if both_nan else abs(va - vb)
                agreement.append({"a": a, "b": b, "metric": key, "a_value": va, "b_value": vb, "delta": delta,
                                  "tolerance": tol, "passed": bool(both_nan or delta <= tol)})
    return CheckResult(names, pairs, vs_gt, agreement, seconds, len(feeds), priors,
                       outputs if keep_outputs else {})
