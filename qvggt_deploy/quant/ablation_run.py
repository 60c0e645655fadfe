"""``qvggt ablate`` end to end: the model, the calibration and held-out scenes, the rows (cached in
``OUT.work/`` beside the folder, so a rerun resumes), the statistics and the folder ``OUT``
(``ablation.json``, ``ablation.md``, ``ablation.png``), replaced whole once every row is done.

What a row computes lives in :mod:`.ablation`, the statistics in :mod:`.ablation_report`; this
module only wires them to the model source and the data, as :mod:`.run` does for calibration.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.model.checkpoint import ModelSource
from qvggt_deploy.quant.calibrate import CalibOptions
from qvggt_deploy.quant.run import CalibData, MemoryCheck

logger = get_logger(__name__)

JSON, MD, PNG = "ablation.json", "ablation.md", "ablation.png"


@dataclass(frozen=True)
class AblateOptions:
    """What an ablation runs: the model, its calibration data, the options every row starts from
    (``base``; its group is the settings' group), which settings and rows, and the held-out
    generated scenes every row is scored on (seeds 10^9 + ``eval_seed`` + i)."""

    model: ModelSource
    data: CalibData
    base: CalibOptions
    settings: Tuple[str, ...] = ("all",)
    rows: Tuple[str, ...] = ("all",)
    eval_scenes: int = 64
    eval_frames: int = 4
    eval_seed: int = 0
    max_points: int = 5000


def work_folder(out) -> Path:
    return Path(f"{out}.work")


def check_ablation_output(out, force: bool = False) -> None:
    """Refuse, before any work, a folder that is not an earlier ablation (unless ``force``) and a
    work folder path that is something else."""
    from qvggt_deploy.fileio import check_output_dir

    check_output_dir(out, ours=JSON, what="qvggt ablate folder (no ablation.json)", force=force)
    check_output_dir(work_folder(out), option="--out (work folder)", replace=False)


def ablate_to(opts: AblateOptions, out, force: bool = False, check_memory: Optional[MemoryCheck] = None) -> Dict:
    """Run the ablation into the folder ``out``; returns its result (rows, plans, acceptance, settings)."""
    from qvggt_deploy.fileio import atomic_dir, write_json, write_text
    from qvggt_deploy.metrics.evaluate import eval_scenes
    from qvggt_deploy.quant.ablation import run_ablation, select
    from qvggt_deploy.quant.ablation_report import INTERVAL, acceptance, analyse, format_markdown, write_chart
    from qvggt_deploy.quant.recipe import model_fingerprint
    from qvggt_deploy.quant.run import calibration_scenes

    check_ablation_output(out, force)
    entries = select(opts.settings, opts.rows, opts.base.group)
    if not entries:
        raise QvggtError(f"--settings {','.join(opts.settings)} --rows {','.join(opts.rows)}: no row selected")
    start = time.perf_counter()
    model = opts.model.load("cpu")
    calib, data_digest = calibration_scenes(model, opts.data, "cpu", opts.base.group, check_memory)
    size = opts.data.image_size or model.cfg.img_size
    logger.info("rendering %d evaluation scenes", opts.eval_scenes)
    scenes = list(eval_scenes(opts.eval_scenes, opts.eval_frames, opts.eval_seed, (size, size)))
    key = {"fingerprint": model_fingerprint(model), "calib": data_digest,
           "eval": [opts.eval_scenes, opts.eval_frames, opts.eval_seed, opts.max_points, size]}
    result = run_ablation(lambda: opts.model.load("cpu"), calib, scenes, opts.base, entries, work_folder(out), key,
                          opts.max_points)
    analyse(result)
    result["acceptance"] = acceptance(result)
    result["settings"] = run_record(opts, len(calib), size, time.perf_counter() - start, INTERVAL)
    with atomic_dir(out, ours=JSON, force=force) as tmp:
        write_json(tmp / JSON, result)
        write_text(tmp / MD, format_markdown(result, result["settings"]))
        chart = write_chart(result, tmp / PNG)
    logger.info("ablation -> %s (%s, %s%s)", out, MD, JSON, f", {PNG}" if chart else "")
    for c in result["acceptance"]:
        logger.info("%s %s", {True: "PASS", False: "FAIL", None: "NOT RUN"}[c["passed"]], c["criterion"])
    return result


def run_record(opts: AblateOptions, calib_scenes: int, size: int, seconds: float, interval: str) -> Dict:
    """What the ablation ran on, for the JSON (scenes, seeds, checkpoint digest, CPU, threads)."""
    import torch

    from qvggt_deploy.model.checkpoint import default_checkpoint, resolve_checkpoint
    from qvggt_deploy.procstats import cpu_info
    from qvggt_deploy.quant.ablation import SETTINGS

    src, data, group = opts.model, opts.data, opts.base.group
    path = resolve_checkpoint(src.checkpoint) if src.checkpoint else default_checkpoint(src.preset)
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    source = data.calib or "generated"
    return {"preset": src.preset, "checkpoint": src.checkpoint or ("embedded" if path else "random weights"),
            "checkpoint_sha256": sha, "eval_scenes": opts.eval_scenes, "eval_frames": opts.eval_frames,
            "eval_seed": opts.eval_seed, "calib_scenes": calib_scenes, "calib_frames": data.frames,
            "calib_seed": data.seed, "calib_source": source, "image_size": size, "max_points": opts.max_points,
            "calib": f"{calib_scenes} {'generated' if not data.calib else data.calib} scenes x {data.frames} frames "
                     f"(seed {data.seed})",
            "eval": f"{opts.eval_scenes} held-out generated scenes x {opts.eval_frames} frames "
                    f"(seeds 10^9 + {opts.eval_seed} + i)",
            "group": group, "interval": interval,
            "settings": [{"name": s.with_group(group).name, "kind": s.kind, "title": s.title, "wbits": s.wbits,
                          "abits": s.abits, "budget_avg_bits": s.budget, "mp_options": list(s.mp_options)}
                         for s in SETTINGS],
            "base_options": opts.base.to_json(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": cpu_info(), "seconds": seconds}
