"""The ablation: each QVGGT component added in turn, measured with the project's metrics.

Rows are data (:data:`ROWS`): a name, what it adds, the method switches and whether the
mixed-precision plan applies. Every row calibrates a fresh copy of the float model on the same
calibration scenes and is scored by :func:`qvggt_deploy.metrics.evaluate.evaluate_model` on the
same held-out generated scenes. Row results are cached in a work folder (keyed by options, model
and data) so an interrupted ablation resumes; the tables are written as Markdown and JSON.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.quant.calibrate import CalibOptions, calibrate
from qvggt_deploy.quant.config import weight_bytes
from qvggt_deploy.quant.targets import candidate_linears
from qvggt_deploy.quant.workstore import WorkStore, key_digest

logger = get_logger(__name__)

METRICS = ("auc@30", "abs_rel", "delta_1.25", "chamfer", "consistency")


@dataclass(frozen=True)
class Row:
    name: str
    adds: str
    method: Optional[str] = None  # None: the float model
    changes: Dict = field(default_factory=dict)
    mixed: bool = False
    table: str = "main"


ROWS: List[Row] = [
    Row("fp32", "float model"),
    Row("rtn", "round to nearest, W4A16", "rtn"),
    Row("awq", "AWQ scale + clip search", "awq"),
    Row("awq+mp", "+ mixed precision (budget)", "awq", mixed=True),
    Row("awq+mp+filter", "+ special tokens filtered (no compensation)", "awq",
        {"token_filter": True, "comp_directions": 0}, mixed=True),
    Row("awq+mp+tf", "+ compensation rows (token rule complete)", "awq", {"token_filter": True}, mixed=True),
    Row("qvggt", "+ task-aware search (= QVGGT)", "qvggt", mixed=True),
    Row("qvggt-w4", "QVGGT without mixed precision (all W4A16)", "qvggt"),
    Row("rtn-w8a8", "RTN W8A8 (static per-tensor INT8 activations)", "rtn", {"wbits": 8, "abits": 8}, table="a8"),
    Row("qvggt-w8a8", "QVGGT W8A8 (special tokens bypass the activation quantizer)", "qvggt",
        {"wbits": 8, "abits": 8}, table="a8"),
    Row("rtn-w4a8", "RTN W4A8", "rtn", {"abits": 8}, table="a8"),
    Row("qvggt-w4a8", "QVGGT W4A8", "qvggt", {"abits": 8}, table="a8"),
    Row("qvggt-top0", "task-aware search off: (a, clip) by reconstruction only", "qvggt",
        {"search": {"top_m": 0}}, table="tradeoff"),
    Row("qvggt-top3", "heads score the 3 best candidates (and RTN) on 2 scenes", "qvggt",
        {"search": {"top_m": 3, "scenes": 2}}, table="tradeoff"),
    Row("qvggt-top8", "heads score the 8 best candidates", "qvggt", {"search": {"top_m": 8}}, table="tradeoff"),
]


def model_bytes(model: nn.Module, linear_bytes: float, float_bytes: int) -> float:
    """Deployed weights: the Linears as planned, every other parameter of the deployed heads at
    ``float_bytes`` (the track head is not deployed)."""
    linear_params = {id(m.weight) for m in candidate_linears(model).values()}
    rest = sum(p.numel() for n, p in model.named_parameters()
               if id(p) not in linear_params and not n.startswith("track_head."))
    return linear_bytes + rest * float_bytes


def linear_bytes(model: nn.Module, recipe=None, precision: str = "fp32") -> float:
    total = 0.0
    for name, lin in candidate_linears(model).items():
        spec = recipe.layers.get(name) if recipe is not None else None
        total += weight_bytes(lin.out_features, lin.in_features, spec.precision if spec else precision,
                              spec.group if spec else None)
    return total


def run_ablation(load_model: Callable[[], nn.Module], calib: List[torch.Tensor], scenes: Sequence,
                 base: CalibOptions, rows: Sequence[Row], plan_for: Callable[[nn.Module], object],
                 work: Path, key: Dict, max_points: int = 5000) -> Dict:
    """Calibrate and evaluate every row; returns ``{"rows": [...], "plan": ...}``.

    Args:
        load_model: a fresh float model per call.
        calib: calibration scenes. scenes: evaluation scenes (with ground truth), reused by rows.
        base: options every row starts from (group, grids, seed); rows override switches.
        plan_for: float model -> :class:`~qvggt_deploy.quant.mixed.Plan` (called once, lazily).
        work: folder for cached row results. key: what identifies model and data.
    """
    from qvggt_deploy.metrics.evaluate import evaluate_model, torch_model_fn

    plan = None
    results = []
    for row in rows:
        opts = row_options(row, base)
        if row.mixed and plan is None:
            plan = plan_for(load_model())
        store = WorkStore(work / row.name, {**key, "row": row.name, "options": opts.to_json() if opts else None,
                                            "plan": plan.units if row.mixed else None})
        cached = store.load_json("result")
        if cached is not None:
            logger.info("ablation %s: cached", row.name)
            results.append(cached)
            continue
        model = load_model()
        t0 = time.perf_counter()
        recipe = None
        if opts is not None:
            recipe = calibrate(model, calib, opts, plan.units if row.mixed else None,
                               WorkStore(work / row.name / "units", {**key, "options": opts.to_json(),
                                                                     "plan": plan.units if row.mixed else None}))
        calib_s = time.perf_counter() - t0
        fresh = load_model()
        lin = linear_bytes(fresh, recipe)
        t0 = time.perf_counter()
        metrics = evaluate_model(torch_model_fn(model, torch.device("cpu")), scenes, max_points=max_points,
                                 total=len(scenes))
        result = {"name": row.name, "adds": row.adds, "table": row.table,
                  "options": opts.to_json() if opts else None, "mixed": row.mixed,
                  "metrics": {k: metrics["mean"][k] for k in METRICS if k in metrics["mean"]},
                  "linear_mb": lin / 1e6, "model_mb": model_bytes(fresh, lin, 4 if recipe is None else 2) / 1e6,
                  "avg_bits": 8 * lin / sum(m.weight.numel() for m in candidate_linears(fresh).values()),
                  "calib_seconds": calib_s, "eval_seconds": time.perf_counter() - t0,
                  "per_scene": [{k: r.get(k) for k in ("seed", *METRICS)} for r in metrics["per_scene"]]}
        store.save_json("result", result)
        results.append(result)
        logger.info("ablation %s: %s", row.name, ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items()))
    return {"rows": results, "plan": plan.to_json() if plan is not None else None}


def row_options(row: Row, base: CalibOptions) -> Optional[CalibOptions]:
    """``base`` with the row's method switches (``changes["search"]``: task-search overrides)."""
    if row.method is None:
        return None
    changes = dict(row.changes)
    search = changes.pop("search", {})
    opts = CalibOptions.for_method(row.method, **{**_base_changes(base), **changes})
    return dataclasses.replace(opts, search=dataclasses.replace(opts.search, **search)) if search else opts


def _base_changes(base: CalibOptions) -> Dict:
    keep = ("wbits", "group", "act_granularity", "act_calib", "comp_directions", "search", "task_weights",
            "max_rows", "seed")
    return {k: getattr(base, k) for k in keep}


def checks(result: Dict, target: str = "qvggt") -> Dict[str, bool]:
    """The acceptance criteria of ``target`` vs FP32 and RTN."""
    rows = {r["name"]: r["metrics"] for r in result["rows"]}
    if not {"fp32", "rtn", target} <= set(rows):
        raise QvggtError(f"checks need the fp32, rtn and {target} rows")
    fp, rtn, q = rows["fp32"], rows["rtn"], rows[target]
    return {
        "auc@30 within 1.0 point of FP32": q["auc@30"] >= fp["auc@30"] - 1.0,
        "abs_rel within 3% (relative) of FP32": q["abs_rel"] <= fp["abs_rel"] * 1.03,
        "chamfer within 5% (relative) of FP32": q["chamfer"] <= fp["chamfer"] * 1.05,
        "camera better than RTN (auc@30)": q["auc@30"] > rtn["auc@30"],
        "depth better than RTN (abs_rel)": q["abs_rel"] < rtn["abs_rel"],
        "points better than RTN (chamfer)": q["chamfer"] < rtn["chamfer"],
    }


def format_markdown(result: Dict, settings: Dict) -> str:
    """Tables (main, activation quantization, search trade-off) with deltas vs FP32."""
    rows = result["rows"]
    fp_row = next((r for r in rows if r["name"] == "fp32"), None)
    fp = fp_row["metrics"] if fp_row else None
    lines = [f"# QVGGT ablation ({settings.get('preset')}, {settings.get('checkpoint')})", "",
             f"Calibration: {settings.get('calib')}. Evaluation: {settings.get('eval')}. "
             f"Weights: group {settings.get('group')}; mixed precision budget {settings.get('budget')}.", ""]
    titles = {"main": "Components, added one at a time (W4A16)", "a8": "INT8 activations",
              "tradeoff": "Task-aware search: head-scored candidates per group vs cost"}
    for table in ("main", "a8", "tradeoff"):
        sel = [r for r in rows if r["table"] == table or (r["name"] == "fp32" and table != "tradeoff")]
        if len(sel) <= (1 if table != "tradeoff" else 0):
            continue
        lines += [f"## {titles[table]}", "",
                  "| row | adds | AUC@30 ^ | paired dAUC +- SE | AbsRel v | delta<1.25 ^ | Chamfer v | consistency v "
                  "| Linear MB | avg bits | model MB | calib s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sel:
            m = r["metrics"]
            cells = [_cell(m, k, fp) for k in METRICS]
            cells.insert(1, _paired(r, fp_row))
            lines.append(f"| {r['name']} | {r['adds']} | " + " | ".join(cells) +
                         f" | {r['linear_mb']:.3f} | {r['avg_bits']:.2f} | {r['model_mb']:.2f} | "
                         f"{r['calib_seconds']:.0f} |")
        lines.append("")
    for key, what in (("checks", "QVGGT (`qvggt` row, with its mixed-precision plan)"),
                      ("checks_w4", "QVGGT with every block at W4A16 (`qvggt-w4` row)")):
        if result.get(key):
            lines += [f"## Acceptance: {what} vs FP32 and RTN", ""]
            lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in result[key].items()]
            lines.append("")
    if result.get("plan"):
        p = result["plan"]
        counts = {}
        for prec in p["units"].values():
            counts[prec] = counts.get(prec, 0) + 1
        lines += ["## Mixed-precision plan", "",
                  f"{p['mb']:.3f} MB of Linear weights, {p['avg_bits']:.2f} bits/weight; "
                  + ", ".join(f"{n} unit(s) {k}" for k, n in sorted(counts.items())) + ": "
                  + ", ".join(f"{u.replace('aggregator.', '')} {prec}" for u, prec in p["units"].items()
                              if prec != "w4a16"), ""]
    spread = ""
    if fp is not None and fp.get("chamfer"):
        worst = max(abs(r["metrics"]["chamfer"] / fp["chamfer"] - 1) for r in rows)
        spread = f"largest Chamfer change of any row: {100 * worst:.3f}%; "
    lines.append("Deltas in parentheses are vs FP32 (relative % for AbsRel, Chamfer and consistency; "
                 f"{spread}the JSON has full precision). "
                 "Paired dAUC: mean over scenes of (row - FP32) AUC@30 per scene, +- its standard error: "
                 "how much of an AUC difference is noise of the evaluation set.")
    return "\n".join(lines) + "\n"


def _paired(row: Dict, fp_row: Optional[Dict], key: str = "auc@30") -> str:
    if fp_row is None or row is fp_row or not row.get("per_scene") or not fp_row.get("per_scene"):
        return "-"
    d = [a[key] - b[key] for a, b in zip(row["per_scene"], fp_row["per_scene"])
         if a.get(key) is not None and b.get(key) is not None]
    if len(d) < 2:
        return "-"
    mean = sum(d) / len(d)
    se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
    return f"{mean:+.2f} +- {se:.2f}"


def _cell(m: Dict, key: str, fp: Optional[Dict]) -> str:
    v = m.get(key)
    if v is None:
        return "-"
    if fp is None or key not in fp or m is fp:
        return f"{v:.4f}" if key not in ("auc@30", "delta_1.25") else f"{v:.2f}"
    if key in ("auc@30", "delta_1.25"):
        return f"{v:.2f} ({v - fp[key]:+.2f})"
    rel = 100.0 * (v - fp[key]) / fp[key] if fp[key] else float("nan")
    return f"{v:.4f} ({rel:+.1f}%)"


def digest(obj) -> str:
    return key_digest(obj)[:16]
