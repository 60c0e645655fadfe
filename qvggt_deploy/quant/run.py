"""Calibration runs end to end, as ``qvggt sensitivity``, ``qvggt calibrate``, ``qvggt ablate`` and
the demo run them: the model, the calibration scenes, the mixed-precision plan, the resumable work
folder beside the recipe, and the recipe with its run record.

The memory estimate of a calibration needs the activation model of ``trt.memory``, a layer above
this package: callers pass it as ``check_memory`` (``backends.limits.check_calibration_fits``).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.model.checkpoint import ModelSource
from qvggt_deploy.quant.calibrate import CalibOptions
from qvggt_deploy.quant.workstore import KEY_FILE as WORK_MARK  # what makes a folder a calibration work folder

logger = get_logger(__name__)

#: ``check_memory(cfg, scenes, frames, size)``: refuse a calibration that cannot fit.
MemoryCheck = Callable[[Any, int, int, int], None]

RECIPE_MARK = "recipe.json"  # what makes a folder a recipe (replaced by a new one)


@dataclass(frozen=True)
class CalibData:
    """Calibration scenes: a folder (``calib``, ``calib_batches`` sequences drawn from it) or
    ``synthetic`` generated scenes (8 when neither is given)."""

    calib: Optional[str] = None
    synthetic: Optional[int] = None
    calib_batches: int = 8
    frames: int = 4
    image_size: Optional[int] = None  # None: the preset's img_size
    seed: int = 0

    @property
    def count(self) -> int:
        if self.calib:
            return self.calib_batches
        return self.synthetic if self.synthetic is not None else 8


def calibration_scenes(model, data: CalibData, device, group: Optional[int] = None,
                       check_memory: Optional[MemoryCheck] = None) -> Tuple[List, str]:
    """The calibration scenes (``[1, S, 3, H, W]`` each, on ``device``) and their digest."""
    from qvggt_deploy.data.calib import SYNTHETIC, calibration_batches

    size = data.image_size or model.cfg.img_size
    if size % model.cfg.patch_size:
        raise QvggtError(f"--image-size {size} is not a multiple of the patch size {model.cfg.patch_size}")
    count = data.count
    if count < 1:
        raise QvggtError(f"need at least one calibration scene, got {count}")
    if group is not None:
        check_group(model, group)
    if check_memory is not None:
        check_memory(model.cfg, count, data.frames, size)
    scenes = [b.unsqueeze(0) for b in calibration_batches(data.calib or SYNTHETIC, count, data.frames, size,
                                                          data.seed, patch=model.cfg.patch_size)]
    h = hashlib.sha256()
    for s in scenes:
        h.update(s.contiguous().numpy().tobytes())
    return [s.to(device) for s in scenes], h.hexdigest()


def check_group(model, group: int) -> None:
    """A group size must divide the input width of the Linears it is meant for; one that divides
    none of them would leave every layer in fp16 under a W4 name."""
    from qvggt_deploy.quant.targets import candidate_linears

    widths = sorted({lin.in_features for lin in candidate_linears(model).values()})
    fits = [w for w in widths if w % group == 0]
    if not fits:
        valid = [g for g in (16, 32, 64, 128, 256) if any(w % g == 0 for w in widths)]
        raise QvggtError(f"--group {group} divides none of the model's Linear input widths "
                         f"({', '.join(map(str, widths))}); use one of {', '.join(map(str, valid))}")


def parse_precisions(text: str, option: str) -> Tuple[str, ...]:
    """``"fp16,w4a16"`` -> known precision names, at least one."""
    from qvggt_deploy.quant.config import get_precision

    names = tuple(o.strip() for o in text.split(",") if o.strip())
    if not names:
        raise QvggtError(f"{option} is empty; name the precisions a block may get (e.g. fp16,w8a16,w4a16)")
    for name in names:
        get_precision(name)
    return names


@dataclass(frozen=True)
class SensitivityOptions:
    """``qvggt sensitivity``: every unit alone at each of ``precisions`` (RTN), on ``data``."""

    model: ModelSource = field(default_factory=ModelSource)
    data: CalibData = field(default_factory=CalibData)
    precisions: Tuple[str, ...] = ("fp16", "w8a16", "w4a16")
    group: int = 128
    act_granularity: str = "per_tensor"
    device: Any = "cpu"

    def __post_init__(self):
        from qvggt_deploy.quant.config import get_precision

        for p in self.precisions:
            if get_precision(p).name == "fp32":
                raise QvggtError("--precisions: fp32 is the reference, not an option")


def sensitivity_table(opts: SensitivityOptions, check_memory: Optional[MemoryCheck] = None) -> Dict:
    """The sensitivity table and ranking (``quant.sensitivity``) with the run's settings."""
    from qvggt_deploy.quant.sensitivity import measure_sensitivity

    model = opts.model.load(opts.device)
    scenes, _ = calibration_scenes(model, opts.data, opts.device, opts.group, check_memory)
    result = measure_sensitivity(model, scenes, list(opts.precisions), opts.group,
                                 act_granularity=opts.act_granularity)
    result["settings"] = {"preset": opts.model.preset, "checkpoint": opts.model.checkpoint or "embedded",
                          "calib": opts.data.calib or "synthetic", "scenes": len(scenes), "seed": opts.data.seed}
    logger.info("most sensitive: %s", ", ".join(result["ranking"][:5]))
    return result


def read_sensitivity(path) -> Dict:
    """A sensitivity table: the JSON file, or the folder ``qvggt sensitivity --out`` wrote."""
    path = Path(path)
    if path.is_dir():
        path = path / "sensitivity.json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise QvggtError(f"{path}: unreadable sensitivity file ({exc})") from exc


@dataclass(frozen=True)
class CalibrateOptions:
    """``qvggt calibrate``: the model, its calibration data and method; with a budget
    (``avg_bits`` or ``max_weight_mb``) a mixed-precision plan over ``mp_options`` first."""

    model: ModelSource = field(default_factory=ModelSource)
    data: CalibData = field(default_factory=CalibData)
    calib: CalibOptions = field(default_factory=CalibOptions)
    avg_bits: Optional[float] = None
    max_weight_mb: Optional[float] = None
    mp_options: Tuple[str, ...] = ("fp16", "w8a16", "w4a16")
    sensitivity: Optional[str] = None  # a table from `qvggt sensitivity` to reuse
    device: Any = "cpu"
    keep_work: bool = False
    force: bool = False  # replace an output folder that is not a recipe

    def __post_init__(self):
        if self.avg_bits is not None and self.max_weight_mb is not None:
            raise QvggtError("give one budget: --avg-bits or --max-weight-mb")
        parse_precisions(",".join(self.mp_options), "--mp-options")

    @property
    def mixed(self) -> bool:
        return self.avg_bits is not None or self.max_weight_mb is not None


def work_folder(out) -> Path:
    """Where a calibration into ``out`` keeps its finished units (resume after an interruption)."""
    return Path(f"{out}.work")


def check_recipe_output(out, force: bool = False) -> None:
    """``out`` and its work folder before any work: a folder of someone else's files at either is
    refused (the work folder is deleted when calibration ends)."""
    from qvggt_deploy.fileio import check_output_dir

    check_output_dir(out, ours=RECIPE_MARK, what="recipe folder (no recipe.json)", force=force)
    check_output_dir(work_folder(out), ours=WORK_MARK, what="calibration work folder (no key.json)",
                     option="--out (work folder)", force=force)


def calibrate_to(opts: CalibrateOptions, out, check_memory: Optional[MemoryCheck] = None):
    """Calibrate ``opts.model`` and write the recipe folder ``out`` whole; returns the recipe.

    Finished units are kept in ``OUT.work/`` as they complete; the same options, model and data
    resume there. The seconds of each phase are logged and kept in ``recipe.run``.
    """
    from qvggt_deploy.fileio import sha256_file
    from qvggt_deploy.quant.calibrate import calibrate
    from qvggt_deploy.quant.phases import PhaseClock
    from qvggt_deploy.quant.recipe import model_fingerprint
    from qvggt_deploy.quant.workstore import WorkStore

    check_recipe_output(out, opts.force)
    cal = opts.calib
    start = time.perf_counter()
    model = opts.model.load(opts.device)
    fingerprint = model_fingerprint(model)
    scenes, data_digest = calibration_scenes(model, opts.data, opts.device, cal.group, check_memory)
    logger.info("calibration: %d scene(s) of %d frame(s), method %s, %s, group %d",
                len(scenes), scenes[0].shape[1], cal.method, cal.precision, cal.group)
    budget = {"avg_bits": opts.avg_bits, "max_weight_mb": opts.max_weight_mb,
              "mp_options": ",".join(opts.mp_options) if opts.mixed else None}
    sens_digest = sha256_file(_sensitivity_file(opts.sensitivity)) if opts.sensitivity else None
    work = WorkStore(str(work_folder(out)), {"options": cal.to_json(), "budget": budget,
                                             "fingerprint": fingerprint, "data": data_digest,
                                             "sensitivity": sens_digest})  # another table, another plan
    plan = None
    shapes = layer_shapes(model)  # before calibration swaps the Linears
    phases = PhaseClock()
    calib_start = time.perf_counter()
    try:
        if opts.mixed:
            with phases("sensitivity"):
                plan = mixed_plan(model, scenes, opts, work)
        recipe = calibrate(model, scenes, cal, plan.units if plan else None, work, fingerprint, phases)
    except BaseException:
        if not any(p.name != WORK_MARK for p in work.folder.iterdir()):
            work.remove()  # nothing to resume from: no stray folder after a refusal
        raise
    if plan:
        recipe.extra["plan"] = plan.to_json()
    recipe.extra["weight_bytes"] = recipe_bytes(recipe, shapes)
    if plan and plan.budget is not None and recipe.extra["weight_bytes"] > plan.budget:
        logger.warning("the recipe's Linear weights (%d bytes) exceed the budget (%d bytes): the plan's costs and "
                       "calibration disagree", recipe.extra["weight_bytes"], plan.budget)
    recipe.extra["calibration"] = {"source": opts.data.calib or "synthetic", "scenes": len(scenes),
                                   "frames": int(scenes[0].shape[1]), "seed": opts.data.seed,
                                   "data_sha256": data_digest}  # no timings: the digest must be stable
    seconds = time.perf_counter() - calib_start
    recipe.run = {"calibration_seconds": round(seconds, 2),
                  "phase_seconds": {k: round(v, 2) for k, v in phases.seconds.items()}}
    logger.info("calibration %.1f s: %s", seconds, phases.summary())
    recipe.save(out, force=opts.force)
    if not opts.keep_work:
        work.remove()
    counts: Dict[str, int] = {}
    for spec in recipe.layers.values():
        counts[spec.precision] = counts.get(spec.precision, 0) + 1
    logger.info("recipe -> %s (%s; Linear weights %.3f MB; %.1f s)", out,
                ", ".join(f"{n} {p}" for p, n in sorted(counts.items())), recipe.extra["weight_bytes"] / 1e6,
                time.perf_counter() - start)
    return recipe


def _sensitivity_file(path) -> Path:
    path = Path(path)
    return path / "sensitivity.json" if path.is_dir() else path


def layer_shapes(model) -> Dict[str, Tuple[int, int]]:
    from qvggt_deploy.quant.targets import candidate_linears

    return {n: (lin.out_features, lin.in_features) for n, lin in candidate_linears(model).items()}


def recipe_bytes(recipe, shapes) -> int:
    """Deployed bytes of all candidate Linears under ``recipe`` (layers it does not list: fp16)."""
    from qvggt_deploy.quant.config import weight_bytes

    total = 0.0
    for name, (n, k) in shapes.items():
        spec = recipe.layers.get(name)
        total += weight_bytes(n, k, spec.precision if spec else "fp16", spec.group if spec else None)
    return int(total)


def mixed_plan(model, scenes, opts: CalibrateOptions, work):
    """Sensitivity (reused from ``opts.sensitivity``, from the work folder, or measured) -> plan."""
    from qvggt_deploy.quant.mixed import budget_from, count_weights, make_plan
    from qvggt_deploy.quant.sensitivity import measure_sensitivity
    from qvggt_deploy.quant.targets import quant_units

    cal = opts.calib
    options = list(opts.mp_options)
    measured = [o for o in options if o != "fp32"]  # fp16 too: its rounding is not always negligible
    if opts.sensitivity:
        sens = read_sensitivity(opts.sensitivity)
        if sens.get("group") != cal.group or not set(measured) <= set(sens.get("precisions", [])):
            raise QvggtError(f"{opts.sensitivity}: measured with group {sens.get('group')} and "
                             f"{sens.get('precisions')}; need group {cal.group} and {measured}")
    else:
        sens = work.load_json("sensitivity")
        if sens is None:
            sens = measure_sensitivity(model, scenes, measured, cal.group, cal.task_weights,
                                       cal.act_granularity, cal.act_calib)
            work.save_json("sensitivity", sens)
    units = quant_units(model)
    budget = budget_from(opts.avg_bits, opts.max_weight_mb, count_weights(model, units))
    plan = make_plan(model, units, sens["task"], budget, cal.group, options)
    logger.info("mixed precision: %s; %.3f MB, %.2f bits/weight avg, summed sensitivity %.3g",
                ", ".join(f"{p} x{list(plan.units.values()).count(p)}" for p in options),
                plan.bytes / 1e6, plan.avg_bits, plan.sensitivity)
    return plan
