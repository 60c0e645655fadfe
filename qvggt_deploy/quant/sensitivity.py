"""Per-unit sensitivity: quantize one unit (block or camera-head rest) at a time with RTN and
measure how much the task loss (:mod:`.objective`: heads vs FP32 + consistency change) grows.

Cheap because of the stream: units are visited in execution order on the float model, and only
the rest of the model from the unit on is re-run per (unit, precision). RTN, not the full
method, is what is measured: it ranks units by how much quantization error they let through
to the heads, which is what mixed precision needs, at a fraction of the cost (the ablation shows
how the plan does with the full method on top).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from qvggt_deploy.fileio import write_figure, write_json
from qvggt_deploy.log import get_logger, progress
from qvggt_deploy.quant.capture import capture_inputs, swapped
from qvggt_deploy.quant.config import get_precision
from qvggt_deploy.quant.objective import TaskWeights, reference, task_loss
from qvggt_deploy.quant.search import UnitSpec, act_scale_for, quantize_linear
from qvggt_deploy.quant.stream import CalibStream
from qvggt_deploy.quant.tokens import split_rows

logger = get_logger(__name__)


@torch.no_grad()
def measure_sensitivity(model: nn.Module, scenes: List[torch.Tensor],
                        precisions: Sequence[str] = ("fp16", "w8a16", "w4a16"),
                        group: int = 128, weights: TaskWeights = TaskWeights(),
                        act_granularity: str = "per_tensor", act_calib: str = "mse") -> Dict:
    """Task-loss increase per unit and precision, the model otherwise in float.

    Returns:
        ``{"units": [names in execution order], "precisions": [...], "group": g,
        "baseline": task loss of the float model (0 up to rounding), "task": {unit: {precision:
        increase}}, "heads": {unit: {precision: {camera, depth, points, consistency}}},
        "ranking": units by decreasing increase at the lowest precision}``.
    """
    stream = CalibStream(model, scenes)
    refs = reference(stream.predictions())
    base = task_loss(stream.predictions(), refs, weights)["task"]
    out = {"units": [u.name for u in stream.units], "precisions": list(precisions), "group": group,
           "weights": weights.as_dict(), "baseline": base, "task": {}, "heads": {}}
    for unit in progress(stream.units, desc="sensitivity"):
        out["task"][unit.name], out["heads"][unit.name] = {}, {}
        inputs = _unit_inputs(stream, unit) if any(get_precision(p).abits for p in precisions) else None
        for p in precisions:
            spec = UnitSpec(p, group, act_granularity, act_calib, special_bypass=True)
            trial = {}
            for name in unit.linears:
                linear = model.get_submodule(name)
                if not spec.bits or linear.in_features % group:
                    trial[name] = quantize_linear(linear, UnitSpec("fp16", group))
                    continue
                rows = inputs[name] if inputs is not None else None
                act_scale = act_scale_for(spec, rows, rows.new_ones(rows.shape[0])) if rows is not None else None
                trial[name] = quantize_linear(linear, spec, act_scale=act_scale)
            with swapped(model, trial):
                loss = task_loss(stream.predictions(), refs, weights)
            out["task"][unit.name][p] = loss.pop("task") - base
            out["heads"][unit.name][p] = loss
        stream.advance(unit)
    lowest = min(precisions, key=lambda p: get_precision(p).weight_bits)
    out["ranking"] = sorted(out["units"], key=lambda u: -out["task"][u][lowest])
    return out


def _unit_inputs(stream: CalibStream, unit) -> Dict[str, torch.Tensor]:
    """Input rows of the unit's Linears with the special tokens left out (activation ranges)."""
    if unit.kind == "camera":
        got = stream.linear_inputs(unit.linears)
        return {n: torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]) for n, xs in got.items()}
    model = stream.model
    block = model.get_submodule(unit.name)
    inputs = stream.unit_inputs(unit)
    with capture_inputs({n: model.get_submodule(n) for n in unit.linears}) as got:
        for inp in inputs:
            block(inp.x, pos=inp.pos)
    return {n: torch.cat([split_rows(x, i.tokens_per_frame, i.num_special)[0] for x, i in zip(xs, inputs)])
            for n, xs in got.items()}


def save_sensitivity(result: Dict, json_path, png_path: Optional[str] = None) -> None:
    """Write the table as JSON and, if asked, a bar chart (matplotlib, Agg backend)."""
    write_json(json_path, result)
    if png_path:
        plot_sensitivity(result, png_path)


def plot_sensitivity(result: Dict, png_path) -> None:
    import matplotlib.pyplot as plt  # the backend is the caller's (the CLI picks Agg)

    units = result["units"]
    labels = [u.replace("aggregator.", "").replace("patch_embed.blocks.", "vit.").replace("_blocks.", ".")
              for u in units]
    precisions = result["precisions"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(units)), 4))
    width = 0.8 / len(precisions)
    for k, p in enumerate(precisions):
        vals = [max(result["task"][u][p], 1e-9) for u in units]
        ax.bar([i + k * width for i in range(len(units))], vals, width, label=p)
    ax.set_yscale("log")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(units))])
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylabel("task-loss increase (log)")
    ax.set_title("Per-unit quantization sensitivity (RTN, one unit at a time)")
    ax.legend()
    fig.tight_layout()
    write_figure(fig, png_path, dpi=120)
