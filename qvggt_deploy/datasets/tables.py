"""Markdown tables for benchmark results and comparisons (arrows say which way is better)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

from qvggt_deploy.metrics.summary import higher_is_better

LABELS = {"auc@30": "AUC@30", "auc@15": "AUC@15", "auc@5": "AUC@5", "auc@3": "AUC@3", "rra@15": "RRA@15",
          "rta@15": "RTA@15", "accuracy": "Acc", "completeness": "Comp", "chamfer": "Overall",
          "depthcam_accuracy": "Acc (depth+cam)", "depthcam_completeness": "Comp (depth+cam)",
          "depthcam_chamfer": "Overall (depth+cam)"}


def label(key: str, units: str = "") -> str:
    arrow = "↑" if higher_is_better(key) else "↓"
    unit = f" {units}" if units and not higher_is_better(key) and not key.startswith(("rre", "rte")) else ""
    return f"{LABELS.get(key, key)}{unit} {arrow}"


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def result_markdown(result: Dict[str, Any]) -> str:
    """The benchmark table of one run: one row per category (CO3Dv2) and the mean."""
    keys: List[str] = list(result["metrics"])
    units = result.get("units", "")
    headers = ["category", "sequences"] + [label(k, units) for k in keys]
    rows = []
    per_category = result["per_category"]
    if len(per_category) > 1:
        rows += [[name, cat["sequences"]] + [cat.get(k) for k in keys] for name, cat in per_category.items()]
    rows.append(["**mean**", result["num_sequences"]] + [result["mean"].get(k) for k in keys])
    s = result["settings"]
    title = (f"## {result['dataset']}: {s.get('method') or 'model'} ({s['backend']}, preset {s['preset']}), "
             f"{s['num_frames']} frames per sequence, seed {s['seed']}")
    notes = [f"{len(result['skipped'])} sequence(s) skipped by the protocol" if result["skipped"] else ""]
    return "\n\n".join(x for x in [title, markdown(headers, rows), *notes] if x) + "\n"
