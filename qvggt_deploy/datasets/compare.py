"""Several benchmark runs of the same dataset on the same frames, side by side: the official
aggregate of each run and, against the first run, the mean paired per-sequence difference with
its standard error ``std(d, ddof=1) / sqrt(n)`` (same sequences, same frames, so the noise of
the scene sample cancels). Writes a paper-style table (rows: methods and bit widths; columns: the
benchmark's metrics) and a bar chart with the standard errors."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from qvggt_deploy.datasets.tables import fmt, label, markdown
from qvggt_deploy.errors import QvggtError

SAME = ("dataset", "root", "num_frames", "seed", "reader_options", "limit")


def load_result(run_dir) -> Dict[str, Any]:
    path = Path(run_dir) / "results.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QvggtError(f"{path}: not a finished benchmark run ({exc.__class__.__name__}); run qvggt eval "
                         f"--dataset ... --out {run_dir} first") from exc
    if result.get("format") != "qvggt-benchmark-result":
        raise QvggtError(f"{path}: not a qvggt benchmark result")
    return result


def paired(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """Mean and standard error of ``b - a`` over pairs where both are finite."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"diff": float("nan"), "se": float("nan"), "n": 0}
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"diff": float(d.mean()), "se": se, "n": int(d.size)}


def compare_results(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The comparison of finished runs (first = reference); QvggtError unless they share the
    dataset, the protocol settings and, sequence by sequence, the frames."""
    if len(results) < 2:
        raise QvggtError("--compare needs at least two run folders")
    ref = results[0]
    for other in results[1:]:
        for key in SAME:
            if ref["settings"].get(key) != other["settings"].get(key):
                raise QvggtError(f"runs differ in {key} ({ref['settings'].get(key)!r} vs "
                                 f"{other['settings'].get(key)!r}); compare runs of the same frames only")
    per_seq = [{r["key"]: r for r in res["per_sequence"]} for res in results]
    keys = [k for k in per_seq[0] if all(k in p for p in per_seq[1:])]
    if not keys:
        raise QvggtError("the runs have no evaluated sequence in common")
    for k in keys:
        frames = [p[k]["frames"] for p in per_seq]
        if any(f != frames[0] for f in frames[1:]):
            raise QvggtError(f"sequence {k} was evaluated on other frames in one of the runs")
    metrics = list(ref["metrics"])
    # paired statistics for every per-sequence metric; the table shows the benchmark's headline ones
    all_keys = list(dict.fromkeys(m for p in per_seq for k in keys for m in p[k]["metrics"]))
    methods = []
    for res, rows in zip(results, per_seq):
        entry = {"method": res["settings"].get("method") or "model", "settings": res["settings"],
                 "official": {m: res["mean"].get(m) for m in metrics}, "paired": {}}
        for m in all_keys:
            a = [float(per_seq[0][k]["metrics"].get(m, float("nan"))) for k in keys]
            b = [float(rows[k]["metrics"].get(m, float("nan"))) for k in keys]
            entry["paired"][m] = paired(a, b)
        methods.append(entry)
    return {"format": "qvggt-benchmark-comparison", "dataset": ref["dataset"], "units": ref.get("units", ""),
            "metrics": metrics, "sequences": len(keys), "reference": methods[0]["method"], "methods": methods}


def comparison_markdown(comp: Dict[str, Any]) -> str:
    metrics = comp["metrics"]
    headers = ["method"] + [label(m, comp["units"]) for m in metrics]
    rows = []
    for i, entry in enumerate(comp["methods"]):
        cells = [entry["method"]]
        for m in metrics:
            value, p = fmt(entry["official"].get(m), 2), entry["paired"][m]
            cells.append(value if i == 0 else f"{value} ({p['diff']:+.2f} ± {fmt(p['se'], 2)})")
        rows.append(cells)
    return (f"## {comp['dataset']}: {comp['sequences']} sequences, same frames\n\n{markdown(headers, rows)}\n\n"
            f"Values: the benchmark's aggregate. In brackets: mean paired per-sequence difference to "
            f"{comp['reference']} ± its standard error.\n")


def comparison_chart(comp: Dict[str, Any], path) -> None:
    """Bar chart (one panel per metric; error bars = standard error of the paired difference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = comp["metrics"]
    fig = Figure(figsize=(3.2 * len(metrics), 3.2))
    FigureCanvasAgg(fig)
    names = [e["method"] for e in comp["methods"]]
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        values = [e["official"].get(m) or float("nan") for e in comp["methods"]]
        errors = [0.0 if j == 0 else (e["paired"][m]["se"] if math.isfinite(e["paired"][m]["se"]) else 0.0)
                  for j, e in enumerate(comp["methods"])]
        ax.bar(range(len(names)), values, yerr=errors, capsize=3, color=[f"C{j}" for j in range(len(names))])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_title(label(m, comp["units"]), fontsize=9)
    fig.suptitle(f"{comp['dataset']} ({comp['sequences']} sequences)", fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120, format="png")


def compare_runs(run_dirs: Sequence, out=None) -> Dict[str, Any]:
    """Compare finished run folders; with ``out``, write compare.json, compare.md and compare.png
    there (the chart needs matplotlib; without it the chart is left out with a warning)."""
    comp = compare_results([load_result(d) for d in run_dirs])
    if out is not None:
        from qvggt_deploy.fileio import atomic_path, write_json, write_text
        from qvggt_deploy.log import get_logger

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "compare.json", comp)
        write_text(out / "compare.md", comparison_markdown(comp))
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            get_logger(__name__).warning("matplotlib is not installed: no chart (pip install matplotlib)")
        else:
            with atomic_path(out / "compare.png") as tmp:
                comparison_chart(comp, tmp)
    return comp
