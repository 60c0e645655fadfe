"""Selective mixed precision: one precision per unit, minimising summed sensitivity under a
weight-memory budget (a multiple-choice knapsack, solved exactly).

Each unit u has options o (precisions) with a cost ``c(u, o)`` (deployed bytes of its Linears,
scales included, :func:`~qvggt_deploy.quant.config.weight_bytes`) and a value ``d(u, o)`` (the
task-loss increase when u alone is quantized at o, :mod:`.sensitivity`). The plan minimises
``sum d`` subject to ``sum c <= budget``; sensitivities are assumed additive (the usual
first-order assumption, checked by the ablation's measured rows).

Exact solver: a dynamic programme over units keeping only the Pareto frontier of (cost, value)
partial plans; costs are exact integers, so nothing is rounded. Should the frontier grow past
``max_states`` (many units with distinct costs), it is thinned to the best plan per cost bucket
(costs stay exact, so the budget always holds; the plan may then be slightly suboptimal; logged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.quant.config import get_precision, weight_bytes
from qvggt_deploy.quant.targets import Unit

logger = get_logger(__name__)

DEFAULT_OPTIONS = ("fp16", "w8a16", "w4a16")
MB = 1e6


@dataclass
class Plan:
    """A precision per unit, its deployed bytes, summed sensitivity and the budget it met."""

    units: Dict[str, str]
    bytes: int
    sensitivity: float
    budget: Optional[int] = None
    weights: int = 0  # number of Linear weights (for average bits)
    notes: List[str] = field(default_factory=list)

    @property
    def avg_bits(self) -> float:
        return 8.0 * self.bytes / max(self.weights, 1)

    def to_json(self) -> dict:
        return {"units": self.units, "bytes": self.bytes, "mb": self.bytes / MB, "avg_bits": self.avg_bits,
                "sensitivity": self.sensitivity, "budget_bytes": self.budget, "notes": self.notes}


def unit_costs(model: nn.Module, units: Sequence[Unit], options: Sequence[str], group: int
               ) -> Dict[str, Dict[str, int]]:
    """Bytes of each unit at each option. A Linear whose input width the group does not divide
    falls back to fp16 under a quantized option (as calibration does)."""
    costs: Dict[str, Dict[str, int]] = {}
    for unit in units:
        costs[unit.name] = {}
        for opt in options:
            total = 0.0
            for name in unit.linears:
                lin = model.get_submodule(name)
                fits = lin.in_features % group == 0
                # what calibration stores: a quantized option falls back to fp16, a float one stays itself
                stored = opt if fits or not get_precision(opt).is_quantized else "fp16"
                total += weight_bytes(lin.out_features, lin.in_features, stored, group if fits else None)
            costs[unit.name][opt] = int(math.ceil(total))
    return costs


def count_weights(model: nn.Module, units: Sequence[Unit]) -> int:
    return sum(model.get_submodule(n).weight.numel() for u in units for n in u.linears)


def budget_from(avg_bits: Optional[float], max_weight_mb: Optional[float], n_weights: int) -> int:
    """Budget in bytes from ``--avg-bits`` (bits per Linear weight, scales included) or
    ``--max-weight-mb`` (MB = 10^6 bytes)."""
    if (avg_bits is None) == (max_weight_mb is None):
        raise QvggtError("give exactly one of --avg-bits and --max-weight-mb")
    if avg_bits is not None:
        if avg_bits <= 0:
            raise QvggtError(f"--avg-bits must be positive, got {avg_bits}")
        return int(avg_bits * n_weights / 8)
    if max_weight_mb <= 0:
        raise QvggtError(f"--max-weight-mb must be positive, got {max_weight_mb}")
    return int(max_weight_mb * MB)


def allocate(costs: Dict[str, Dict[str, int]], values: Dict[str, Dict[str, float]], budget: int,
             max_states: int = 200_000) -> Tuple[Dict[str, str], int, float]:
    """Exact multiple-choice knapsack: (choice per unit, cost, value) minimising summed value
    with cost <= budget. Raises if even the cheapest plan does not fit."""
    units = list(costs)
    cheapest = sum(min(costs[u].values()) for u in units)
    if cheapest > budget:
        raise QvggtError(f"budget {budget / MB:.3f} MB is below the smallest plan ({cheapest / MB:.3f} MB, "
                         f"every unit at its cheapest option)")
    # frontier: (cost, value, choices) by increasing cost with strictly decreasing value; a partial
    # plan that costs more and is not better can never complete into a better plan.
    frontier: List[Tuple[int, float, Tuple[str, ...]]] = [(0, 0.0, ())]
    for u in units:
        expanded = sorted(((c0 + c, v0 + values[u][opt], ch + (opt,))
                           for c0, v0, ch in frontier for opt, c in costs[u].items() if c0 + c <= budget),
                          key=lambda t: (t[0], t[1]))
        frontier = []
        for item in expanded:
            if not frontier or item[1] < frontier[-1][1]:
                frontier.append(item)
        if len(frontier) > max_states:
            frontier = _thin(frontier, budget, max_states)
    best = min(frontier, key=lambda t: (t[1], t[0]))
    return dict(zip(units, best[2])), best[0], best[1]


def _thin(frontier, budget: int, max_states: int):
    """Keep the best plan per cost bucket of width budget/max_states, and the cheapest plan (so a
    feasible completion always remains). Costs stay exact: the budget still holds."""
    width = budget // max_states + 1
    logger.info("mixed precision: %d partial plans, keeping the best per %d-byte bucket", len(frontier), width)
    kept = {}
    for item in frontier:
        b = item[0] // width
        if b not in kept or item[1] < kept[b][1]:
            kept[b] = item
    out = sorted({id(x): x for x in [frontier[0], *kept.values()]}.values(), key=lambda t: (t[0], t[1]))
    return out


def make_plan(model: nn.Module, units: Sequence[Unit], sensitivity: Dict[str, Dict[str, float]],
              budget: int, group: int, options: Sequence[str] = DEFAULT_OPTIONS) -> Plan:
    """The plan for ``units`` from measured ``sensitivity[unit][precision]`` (fp16 counts 0 when
    not measured; measure it: the camera head's pose path feels even fp16 rounding)."""
    costs = unit_costs(model, units, options, group)
    values = {}
    for u in units:
        values[u.name] = {}
        for opt in options:
            if opt in sensitivity.get(u.name, {}):
                values[u.name][opt] = float(sensitivity[u.name][opt])
            elif opt in ("fp16", "fp32"):
                values[u.name][opt] = 0.0
            else:
                raise QvggtError(f"no sensitivity measured for unit {u.name} at {opt}")
    choice, cost, value = allocate(costs, values, budget)
    return Plan(choice, cost, value, budget, count_weights(model, units))
