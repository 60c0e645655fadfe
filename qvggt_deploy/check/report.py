"""The check report: JSON (everything) and Markdown (tables)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence

from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.check.compare import TASK_METRICS, CheckResult
from qvggt_deploy.fileio import write_json, write_text

METRIC_LABELS = {"auc@30": "AUC@30 (%)", "rre_deg": "RRE (deg)", "rte_deg": "RTE (deg)", "abs_rel": "AbsRel",
                 "delta_1.25": "delta<1.25 (%)", "chamfer": "Chamfer"}


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}"
    return str(x)


def _table(header: Sequence[str], rows: List[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(result: CheckResult, title: str = "qvggt check", notes: Sequence[str] = ()) -> str:
    status = "FAILED" if not result else "PASSED" if result.gated else "NOT GATED (no exact pair: statistics only)"
    parts = [f"# {title}", "", f"**{status}** - {result.samples} samples; runners: "
             + ", ".join(f"`{n}`" for n in result.runners), ""]
    parts += [f"- {n}" for n in notes]
    parts += ["", "## Output differences (max over samples)", "",
              "`exact` pairs are gated elementwise (an element fails when |a-b| > 1e-4 and |a-b| > 1e-3 |b|); "
              "`approx` pairs are reported only.", ""]
    rows = []
    for p in result.pairs:
        for out in OUTPUT_NAMES:
            s = p.outputs[out]
            rows.append([f"{p.comparison.candidate} vs {p.comparison.reference}", p.comparison.kind, out,
                         s.max_abs, s.mean_abs, s.max_rel, s.passed])
    parts.append(_table(["pair", "kind", "output", "max abs", "mean abs", "max rel", "passed"], rows))
    keys = [k for k in TASK_METRICS if any(k in m for m in result.metrics_vs_ground_truth.values())]
    if keys:
        parts += ["", "## Task metrics against ground truth (mean over samples)", ""]
        parts.append(_table(["runner"] + [METRIC_LABELS[k] for k in keys],
                            [[name] + [m.get(k) for k in keys] for name, m in result.metrics_vs_ground_truth.items()]))
        if result.camera_priors_vs_ground_truth:
            parts += ["", "Camera priors on the same scenes (they never look at the images; a runner's camera "
                      "figures mean something only beside these):", ""]
            prior_keys = ("auc@30", "rre_deg", "rte_deg")
            parts.append(_table(["prior"] + [METRIC_LABELS.get(k, k) for k in prior_keys],
                                [[name] + [m.get(k) for k in prior_keys]
                                 for name, m in result.camera_priors_vs_ground_truth.items()]))
    keys = [k for k in TASK_METRICS if any(k in p.metrics_vs_reference for p in result.pairs)]
    if keys:
        parts += ["", "## Task metrics against the reference runner's outputs", ""]
        parts.append(_table(["candidate", "reference"] + [METRIC_LABELS[k] for k in keys],
                            [[p.comparison.candidate, p.comparison.reference] + [p.metrics_vs_reference.get(k) for k in keys]
                             for p in result.pairs]))
    if result.agreement:
        parts += ["", "## Same computation, same metrics", ""]
        parts.append(_table(["a", "b", "metric", "a", "b", "|delta|", "tolerance", "passed"],
                            [[a["a"], a["b"], a["metric"], a["a_value"], a["b_value"], a["delta"], a["tolerance"],
                              a["passed"]] for a in result.agreement]))
    if result.inference_seconds:
        parts += ["", "## Inference time per sample (median, s; for orientation, see `qvggt bench`)", ""]
        parts.append(_table(["runner", "seconds"], [[k, v] for k, v in result.inference_seconds.items()]))
    return "\n".join(parts) + "\n"


def write_report(result: CheckResult, out_dir, extra: Dict = None, notes: Sequence[str] = ()) -> Dict[str, Path]:
    """Write ``check.json`` and ``check.md`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    doc = result.to_dict()
    doc.update(extra or {})
    paths = {"json": out_dir / "check.json", "md": out_dir / "check.md"}
    write_json(paths["json"], doc)
    write_text(paths["md"], markdown(result, notes=notes))
    return paths
