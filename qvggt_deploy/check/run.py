"""A check end to end, as ``qvggt check`` and the demo run it: the plan from the files' metadata
(:mod:`.plan`), the memory estimate, the inputs, the comparison (:mod:`.compare`) and the report
(:mod:`.report`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qvggt_deploy.check.compare import CheckResult
from qvggt_deploy.check.plan import Inputs
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.model.checkpoint import ModelSource

logger = get_logger(__name__)

NO_TENSORRT = ("--trt needs the tensorrt Python package, which is not installed here (TensorRT ships with "
               "JetPack on Jetson; on a desktop GPU: pip install tensorrt)")
REPORT_MARK = "check.json"  # what makes a folder a check report (replaced by a new one)


@dataclass(frozen=True)
class CheckOptions:
    """What to check (``onnx`` and ``trt``: (name, path) pairs) against which PyTorch model, on
    which inputs: generated held-out scenes, or the photos in ``images``."""

    onnx: Sequence[Tuple[str, Path]]
    trt: Sequence[Tuple[str, Path]] = ()
    model: ModelSource = field(default_factory=ModelSource)
    recipes: Sequence[str] = ()  # recipe folders the quantized files were exported with
    images: Optional[str] = None
    max_frames: Optional[int] = None
    mode: str = "crop"
    gates: Sequence[Tuple[str, float]] = ()  # (metric, bound) for every non-exact pair
    scenes: int = 2
    frames: int = 2
    seed: int = 0
    threads: Optional[int] = None
    engine_reference: Optional[str] = None  # name of the --onnx file each engine is also compared with

    def __post_init__(self):
        if not self.onnx:
            raise QvggtError("give at least one --onnx file to check")


@dataclass
class CheckRun:
    """A finished check: the result and what its report says besides."""

    result: CheckResult
    inputs: Inputs
    notes: List[str]
    extra: Dict[str, Any]


def check_exports(opts: CheckOptions) -> CheckRun:
    """Run every file and its PyTorch reference on the inputs and compare them."""
    from qvggt_deploy.backends.limits import check_fits, forward_bytes, scenes_bytes
    from qvggt_deploy.check.compare import run_check
    from qvggt_deploy.check.plan import photo_inputs, plan_check, scene_inputs
    from qvggt_deploy.lazy import is_available
    from qvggt_deploy.model.presets import get_preset
    from qvggt_deploy.threads import apply_threads

    if opts.trt and not is_available("tensorrt"):
        raise QvggtError(NO_TENSORRT)
    apply_threads(opts.threads)
    recipes = {}
    if opts.recipes:
        from qvggt_deploy.quant.recipe import load_recipe

        for path in opts.recipes:
            rec = load_recipe(path)
            recipes[rec.digest] = rec
    src = opts.model
    plan = plan_check(opts.onnx, opts.trt, preset=src.preset, checkpoint=src.checkpoint, recipes=recipes,
                      threads=opts.threads, allow_random=src.allow_random, gates=dict(opts.gates),
                      engine_reference=opts.engine_reference)
    height, width, metas = plan.height, plan.width, plan.metas
    cfg = get_preset(src.preset)
    if opts.images:
        from qvggt_deploy.data.images import list_images

        frames = len(list_images(opts.images)[: opts.max_frames])
        samples, what = 1, f"checking {frames} photo(s) at {height}x{width}"
    else:
        frames, samples = opts.frames, opts.scenes
        what = f"checking {opts.scenes} scene(s) of {opts.frames} frame(s) at {height}x{width}"
    # The torch references and one ORT session at a time, plus every input.
    need = (2 * forward_bytes(cfg, height, width, frames)
            + forward_bytes(cfg, height, width, frames, explicit_attention=True)
            + scenes_bytes(samples, frames, height, width))
    check_fits(need, what, "use fewer --max-frames" if opts.images else "use fewer --frames or --scenes")
    inputs = (photo_inputs(opts.images, height, width, opts.max_frames, opts.mode, cfg.patch_size) if opts.images
              else scene_inputs(opts.scenes, opts.frames, opts.seed, height, width))
    logger.info("checking %d runners on %s", len(plan.runners), inputs.description)
    result = run_check(plan.runners, inputs.feeds, plan.comparisons, ground_truth=inputs.ground_truth,
                       agree=plan.agree, keep_outputs=True)
    notes = [f"preset {src.preset}, {height}x{width}; inputs: {inputs.description}"]
    notes += [f"`ort-{n}`: {p} (target {metas[n]['target']}, recipe {metas[n]['recipe_digest']}, "
              f"accuracy level {metas[n].get('ort_accuracy_level', '-')}, int8 kernel "
              f"{metas[n].get('ort_int8_kernel', 'none')}, computes {metas[n].get('ort_compute', '-')}, "
              f"passes {metas[n].get('passes')})"
              for n, p in opts.onnx]
    if src.allow_random and not src.checkpoint:
        notes.append("random weights (--allow-random-weights): agreement only, no accuracy")
    extra = {"files": {n: str(p) for n, p in opts.onnx}, "metadata": metas, "images": inputs.names}
    return CheckRun(result, inputs, notes, extra)


def write_check(run: CheckRun, out_dir) -> Dict[str, Path]:
    """``check.json``, ``check.md`` and ``figures/`` of ``run`` into ``out_dir``; their paths."""
    from qvggt_deploy.check.report import write_report

    return write_report(run.result, out_dir, extra=run.extra, notes=run.notes, valid=run.inputs.valid,
                        frame_names=run.inputs.names)
