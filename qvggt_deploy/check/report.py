"""The check report: JSON (everything), Markdown (tables) and, where the outputs were kept, one
PNG per compared pair and sample: each frame's reference depth, candidate depth (same colour
range) and per-pixel relative depth error."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from qvggt_deploy.graph.io import OUTPUT_NAMES
from qvggt_deploy.check.compare import TASK_METRICS, CheckResult
from qvggt_deploy.fileio import write_figure, write_json, write_text

FIGURES = "figures"

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


def markdown(result: CheckResult, title: str = "qvggt check", notes: Sequence[str] = (),
             figures: Sequence[Path] = ()) -> str:
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
        parts += ["", "RRE/RTE: relative rotation and translation angles between frame pairs, the candidate's "
                  "cameras against the reference runner's; AbsRel and delta<1.25 of the candidate's depth against the "
                  "reference's; Chamfer between their point maps."]
    gate_rows = [[p.comparison.candidate, p.comparison.reference, METRIC_LABELS[g["metric"]],
                  ("<= " if g["side"] == "max" else ">= ") + _fmt(g["bound"]), g["value"],
                  "n/a" if g["passed"] is None else g["passed"]] for p in result.pairs for g in p.gates]
    if gate_rows:
        parts += ["", "## Metric gates (against the reference runner)", ""]
        parts.append(_table(["candidate", "reference", "metric", "bound", "value", "passed"], gate_rows))
    if result.agreement:
        parts += ["", "## Same computation, same metrics", ""]
        parts.append(_table(["a", "b", "metric", "a", "b", "|delta|", "tolerance", "passed"],
                            [[a["a"], a["b"], a["metric"], a["a_value"], a["b_value"], a["delta"], a["tolerance"],
                              a["passed"]] for a in result.agreement]))
    if result.inference_seconds:
        parts += ["", "## Inference time per sample (median, s; for orientation, see `qvggt bench`)", ""]
        parts.append(_table(["runner", "seconds"], [[k, v] for k, v in result.inference_seconds.items()]))
    if figures:
        parts += ["", "## Depth maps and per-pixel error", "",
                  "Per frame: the reference runner's depth, the candidate's (same colour range), and "
                  "|candidate - reference| / reference (padding left blank).", ""]
        parts += [f"![{f.stem}]({FIGURES}/{f.name})" for f in figures]
    return "\n".join(parts) + "\n"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_depth_figure(path, reference: np.ndarray, candidate: np.ndarray, labels: Sequence[str],
                       valid: Optional[np.ndarray] = None, frame_names: Sequence[str] = ()) -> Path:
    """One row per frame: reference depth, candidate depth (shared range), relative error.

    Args:
        reference, candidate: depth ``[S, H, W]`` (any trailing 1 dropped by the caller).
        labels: (reference name, candidate name).
        valid: ``[S, H, W]`` pixels to show (photo pixels); None = all.
        frame_names: a title per frame. Defaults to frame indices.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S = reference.shape[0]
    valid = np.ones(reference.shape, bool) if valid is None else valid
    fig, axes = plt.subplots(S, 3, figsize=(9.6, 2.9 * S), squeeze=False)
    for s in range(S):
        ref, cand, v = reference[s].astype(np.float64), candidate[s].astype(np.float64), valid[s]
        lo, hi = np.percentile(ref[v], [2, 98]) if v.any() else (0.0, 1.0)
        err = np.abs(cand - ref) / np.maximum(np.abs(ref), 1e-12)
        name = frame_names[s] if s < len(frame_names) else f"frame {s}"
        for col, (img, title, kw) in enumerate([
                (ref, f"{labels[0]}: {name}", {"cmap": "turbo_r", "vmin": lo, "vmax": hi}),
                (cand, labels[1], {"cmap": "turbo_r", "vmin": lo, "vmax": hi}),
                (err, f"rel. error (max {err[v].max() if v.any() else 0:.2g})", {"cmap": "magma", "vmin": 0})]):
            ax = axes[s, col]
            shown = ax.imshow(np.where(v, img, np.nan), **kw)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return write_figure(fig, path, dpi=90)


def write_figures(result: CheckResult, out_dir, valid: Optional[Sequence[np.ndarray]] = None,
                  frame_names: Sequence[str] = (), max_samples: int = 1) -> List[Path]:
    """A depth figure per compared pair for the first ``max_samples`` samples (needs the
    outputs: ``run_check(keep_outputs=True)``)."""
    figures = []
    for p in result.pairs:
        ref, cand = result.outputs.get(p.comparison.reference), result.outputs.get(p.comparison.candidate)
        if not ref or not cand:
            continue
        for k in range(min(max_samples, len(ref))):
            depth_ref = np.asarray(ref[k]["depth"]).reshape(np.asarray(ref[k]["depth"]).shape[1:4])
            depth_cand = np.asarray(cand[k]["depth"]).reshape(depth_ref.shape)
            name = f"{_slug(p.comparison.candidate)}_vs_{_slug(p.comparison.reference)}_{k}.png"
            figures.append(write_depth_figure(Path(out_dir) / FIGURES / name, depth_ref, depth_cand,
                                              (p.comparison.reference, p.comparison.candidate),
                                              None if valid is None else valid[k], frame_names))
    return figures


def write_report(result: CheckResult, out_dir, extra: Dict = None, notes: Sequence[str] = (),
                 valid: Optional[Sequence[np.ndarray]] = None, frame_names: Sequence[str] = ()) -> Dict[str, Path]:
    """Write ``check.json``, ``check.md`` and (where the result kept its outputs) the depth
    figures into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    figures = write_figures(result, out_dir, valid, frame_names) if result.outputs else []
    doc = result.to_dict()
    doc.update(extra or {})
    doc["figures"] = [f"{FIGURES}/{f.name}" for f in figures]
    paths = {"json": out_dir / "check.json", "md": out_dir / "check.md"}
    write_json(paths["json"], doc)
    write_text(paths["md"], markdown(result, notes=notes, figures=figures))
    return paths
