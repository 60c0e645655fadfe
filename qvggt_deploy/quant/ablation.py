"""The ablation: settings where methods separate, and in each one QVGGT's components added in turn.

Settings and rows are data (:data:`SETTINGS`, :data:`ROWS`). A setting fixes the weight bits, the
activation bits, the group and the mixed-precision budget; in every setting the same rows run:
RTN, AWQ, AWQ + mixed precision, the token filter, the compensation rows, the task-aware search
(= QVGGT, mixed) and QVGGT at the setting's own bits (no mixed precision). One FP32 row serves
all settings. Every row calibrates a fresh copy of the float model on the same calibration
scenes and is scored by :func:`qvggt_deploy.metrics.evaluate.evaluate_model` on the same held-out
scenes; rows of weight-only settings are scored twice, with fp32 activations and with the fp16
arithmetic of the W4A16 kernel and TensorRT (:func:`~qvggt_deploy.quant.fake.set_activations`;
same recipe, no second calibration).

Seconds are recorded twice per row: wall (``calib_seconds``, ``eval_seconds``) and CPU time of
this process (``*_cpu_seconds``: with one thread, what a quiet machine's wall clock would show).

Comparisons are at equal average bits: mixed rows share their setting's plan (so they cost the
same bytes) and are compared with AWQ + mixed precision; the other rows with AWQ at the
setting's bits. The statistics live in :mod:`.ablation_report`. Row results are cached in a
work folder (keyed by options, plan, model and data), so an interrupted ablation resumes.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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
FP32 = "fp32"


@dataclass(frozen=True)
class Setting:
    """Where rows are compared: weight bits, activation bits (None: fp16/fp32 activations, i.e.
    weight-only), the mixed-precision budget in bits per Linear weight (scales included) and the
    precisions a unit may get in a mixed plan."""

    kind: str
    title: str
    wbits: int
    abits: Optional[int]
    budget: float
    mp_options: Tuple[str, ...]
    group: int = 128

    @property
    def name(self) -> str:
        return f"w{self.wbits}{'a' + str(self.abits) if self.abits else ''}g{self.group}"

    @property
    def weight_only(self) -> bool:
        return self.abits is None

    def with_group(self, group: int) -> "Setting":
        return dataclasses.replace(self, group=group)


SETTINGS: List[Setting] = [
    Setting("w4", "W4A16 (the deployment default)", 4, None, 4.6, ("fp16", "w8a16", "w4a16")),
    Setting("w3", "W3A16", 3, None, 3.6, ("fp16", "w8a16", "w4a16", "w3a16")),
    Setting("w4a8", "W4A8, static per-tensor INT8 activations", 4, 8, 4.6, ("fp16", "w8a8", "w4a8")),
]


@dataclass(frozen=True)
class Row:
    """A row of every setting: the method preset, switches over it, whether the setting's mixed
    plan applies, and the row it adds to (its marginal effect is measured against that row)."""

    key: str
    adds: str
    method: str
    changes: Dict = field(default_factory=dict)
    mixed: bool = False
    prev: Optional[str] = None

    @property
    def reference(self) -> str:
        """The AWQ row of equal bits."""
        return "awq+mp" if self.mixed else "awq"


ROWS: List[Row] = [
    Row("rtn", "round to nearest", "rtn"),
    Row("awq", "AWQ scale + clip search", "awq", prev="rtn"),
    Row("awq+mp", "+ mixed precision (the setting's budget)", "awq", mixed=True, prev="awq"),
    Row("awq+mp+filter", "+ special tokens filtered (no compensation)", "awq",
        {"token_filter": True, "comp_directions": 0}, mixed=True, prev="awq+mp"),
    Row("awq+mp+comp", "+ compensation rows (token rule complete)", "awq", {"token_filter": True},
        mixed=True, prev="awq+mp+filter"),
    Row("qvggt", "+ task-aware search (= QVGGT)", "qvggt", mixed=True, prev="awq+mp+comp"),
    Row("qvggt-nomp", "QVGGT at the setting's bits (no mixed precision)", "qvggt", prev="awq"),
]
ROW_KEYS = (FP32, *(r.key for r in ROWS))


@dataclass(frozen=True)
class Entry:
    """One row of one setting (``setting`` None: the FP32 row)."""

    setting: Optional[Setting]
    row: Optional[Row]

    @property
    def name(self) -> str:
        return FP32 if self.setting is None else f"{self.setting.name}/{self.row.key}"


def select(settings: Sequence[str] = ("all",), rows: Sequence[str] = ("all",), group: int = 128) -> List[Entry]:
    """The entries to run: settings by kind or name (``w4``, ``w4g128``) and rows by key
    (``awq``) or full name (``w4g128/awq``); ``all`` selects everything. FP32 comes first
    whenever it is selected (every paired difference needs it)."""
    known = [s.with_group(group) for s in SETTINGS]
    unknown = [w for w in settings if w != "all" and not any(w in (s.kind, s.name) for s in known)]
    if unknown:
        raise QvggtError(f"--settings {','.join(unknown)}: no such setting; known: "
                         f"{', '.join(s.kind for s in known)} (or {', '.join(s.name for s in known)})")
    chosen = [s for s in known if "all" in settings or s.kind in settings or s.name in settings]
    names = {FP32, *(f"{s.name}/{r.key}" for s in known for r in ROWS)}
    unknown = [w for w in rows if w != "all" and w not in ROW_KEYS and w not in names]
    if unknown:
        raise QvggtError(f"--rows {','.join(unknown)}: no such row; known: {', '.join(ROW_KEYS)} "
                         f"(or SETTING/ROW, e.g. {known[0].name}/awq)")

    def wanted(name: str, key: str) -> bool:
        return "all" in rows or key in rows or name in rows

    entries = [Entry(None, None)] if wanted(FP32, FP32) else []
    entries += [Entry(s, r) for s in chosen for r in ROWS if wanted(f"{s.name}/{r.key}", r.key)]
    return entries


def row_options(entry: Entry, base: CalibOptions) -> Optional[CalibOptions]:
    """``base`` (grids, weights, seed) with the setting's bits and group and the row's switches."""
    if entry.setting is None:
        return None
    s, row = entry.setting, entry.row
    changes = {k: getattr(base, k) for k in ("act_granularity", "act_calib", "comp_directions", "search",
                                              "task_weights", "max_rows", "seed")}
    changes.update(wbits=s.wbits, abits=s.abits, group=s.group, **row.changes)
    return CalibOptions.for_method(row.method, **changes)


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


def setting_plan(float_model: nn.Module, calib: List[torch.Tensor], setting: Setting, base: CalibOptions,
                 store: WorkStore):
    """The setting's mixed-precision plan: sensitivities measured once (cached in ``store``),
    then the exact knapsack at the setting's budget."""
    from qvggt_deploy.quant.mixed import budget_from, count_weights, make_plan
    from qvggt_deploy.quant.sensitivity import measure_sensitivity
    from qvggt_deploy.quant.targets import quant_units

    sens = store.load_json("sensitivity")
    if sens is None:
        logger.info("ablation %s: measuring sensitivities (%s)", setting.name, ", ".join(setting.mp_options))
        sens = measure_sensitivity(float_model, calib, list(setting.mp_options), setting.group, base.task_weights,
                                   base.act_granularity, base.act_calib)
        store.save_json("sensitivity", sens)
    units = quant_units(float_model)
    budget = budget_from(setting.budget, None, count_weights(float_model, units))
    return make_plan(float_model, units, sens["task"], budget, setting.group, setting.mp_options)


def run_ablation(load_model: Callable[[], nn.Module], calib: List[torch.Tensor], scenes: Sequence,
                 base: CalibOptions, entries: Sequence[Entry], work: Path, key: Dict,
                 max_points: int = 5000) -> Dict:
    """Calibrate and evaluate every entry; returns ``{"rows": [...], "plans": {setting: plan}}``.

    Args:
        load_model: a fresh float model per call.
        calib: calibration scenes. scenes: evaluation scenes (with ground truth), reused by rows.
        base: options every row starts from (grids, task weights, seed); settings and rows set
            the bits, group and switches.
        entries: from :func:`select`.
        work: folder for cached row results. key: what identifies model and data.
    """
    plans: Dict[str, object] = {}
    results = []
    start = time.perf_counter()
    for index, entry in enumerate(entries):
        s = entry.setting
        opts = row_options(entry, base)
        mixed = entry.row is not None and entry.row.mixed
        if mixed and s.name not in plans:
            store = WorkStore(work / s.name / "sensitivity",
                              {**key, "setting": [s.wbits, s.abits, s.group, s.budget, list(s.mp_options)],
                               "weights": base.task_weights,
                               "act": [base.act_granularity, base.act_calib]})
            plans[s.name] = setting_plan(load_model(), calib, s, base, store)
        plan = plans[s.name].units if mixed else None
        row_key = {**key, "row": entry.name, "options": opts.to_json() if opts else None, "plan": plan,
                   "fp16_activations": bool(s and s.weight_only)}
        store = WorkStore(work / entry.name, row_key)
        cached = store.load_json("result")
        if cached is not None:
            logger.info("ablation [%d/%d] %s: cached", index + 1, len(entries), entry.name)
            results.append(cached)
            continue
        logger.info("ablation [%d/%d] %s: calibrating and evaluating (%.0f s so far)", index + 1, len(entries),
                    entry.name, time.perf_counter() - start)
        result = _run_entry(entry, load_model, calib, scenes, opts, plan, store, row_key, max_points)
        store.save_json("result", result)
        results.append(result)
        logger.info("ablation [%d/%d] %s: %s; calibration %.0f s, evaluation %.0f s", index + 1, len(entries),
                    entry.name, ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items()),
                    result["calib_seconds"], result["eval_seconds"])
    return {"rows": results, "plans": {name: p.to_json() for name, p in plans.items()}}


def _run_entry(entry: Entry, load_model, calib, scenes, opts: Optional[CalibOptions], plan: Optional[Dict],
               store: WorkStore, row_key: Dict, max_points: int) -> Dict:
    from qvggt_deploy.metrics.evaluate import evaluate_model, torch_model_fn
    from qvggt_deploy.quant.fake import set_activations

    model = load_model()
    t0, c0 = time.perf_counter(), time.process_time()
    recipe = None
    if opts is not None:
        recipe = calibrate(model, calib, opts, plan, WorkStore(store.folder / "units", row_key))
    calib_s, calib_cpu = time.perf_counter() - t0, time.process_time() - c0
    fresh = load_model()
    lin = linear_bytes(fresh, recipe)
    n_weights = sum(m.weight.numel() for m in candidate_linears(fresh).values())
    s, row = entry.setting, entry.row

    def score() -> Tuple[Dict, List[Dict]]:
        m = evaluate_model(torch_model_fn(model, torch.device("cpu")), scenes, baselines=(), max_points=max_points,
                           total=len(scenes))  # no trivial baseline: it is the same for every row
        return ({k: m["mean"][k] for k in METRICS if k in m["mean"]},
                [{k: r.get(k) for k in ("seed", *METRICS)} for r in m["per_scene"]])

    t0, c0 = time.perf_counter(), time.process_time()
    metrics, per_scene = score()
    result = {"name": entry.name, "setting": s.name if s else None, "row": row.key if row else FP32,
              "adds": row.adds if row else "float model", "method": row.method if row else None,
              "mixed": bool(row and row.mixed), "options": opts.to_json() if opts else None,
              "avg_bits": 8 * lin / n_weights, "linear_mb": lin / 1e6,
              "model_mb": model_bytes(fresh, lin, 4 if recipe is None else 2) / 1e6,
              "metrics": metrics, "per_scene": per_scene,
              "calib_seconds": calib_s, "eval_seconds": time.perf_counter() - t0,
              "calib_cpu_seconds": calib_cpu, "eval_cpu_seconds": time.process_time() - c0}
    if s is not None and s.weight_only and set_activations(model, "fp16"):
        t0, c0 = time.perf_counter(), time.process_time()
        metrics16, per_scene16 = score()
        result["fp16_activations"] = {"metrics": metrics16, "per_scene": per_scene16,
                                      "eval_seconds": time.perf_counter() - t0,
                                      "eval_cpu_seconds": time.process_time() - c0}
    return result


def expected_cost(entries: Sequence[Entry], eval_scenes: int, eval_s_per_scene: float,
                  calib_s: Dict[str, float], sensitivity_s: float) -> Dict[str, float]:
    """Seconds the entries will take, from measured unit costs: one evaluation per row (two for
    weight-only quantized rows), one calibration per quantized row (``calib_s`` by method) and
    one sensitivity pass per setting with mixed rows."""
    evals = sum(2 if e.setting is not None and e.setting.weight_only else 1 for e in entries)
    calib = sum(calib_s.get(e.row.method, 0.0) for e in entries if e.row is not None)
    plans = len({e.setting.name for e in entries if e.row is not None and e.row.mixed})
    total = evals * eval_scenes * eval_s_per_scene + calib + plans * sensitivity_s
    return {"rows": len(entries), "evaluations": evals, "eval_seconds": evals * eval_scenes * eval_s_per_scene,
            "calib_seconds": calib, "sensitivity_seconds": plans * sensitivity_s, "total_seconds": total}


def digest(obj) -> str:
    return key_digest(obj)[:16]
