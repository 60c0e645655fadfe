"""The evaluation loop: a model (any callable) over scenes, with trivial baselines alongside.

Why a callable: the same loop scores the float model, a fake-quantized model and an ONNX Runtime
session; each only has to map ``images [S,3,H,W]`` (RGB in [0, 1]) to VGGT's output dict.

Held-out scenes: :func:`eval_scenes` renders scene ``i`` with seed ``EVAL_SEED_START + seed + i``
(>= 10^9; training uses seeds < 10^6), so results are reproducible and never seen in training.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch

from qvggt_deploy.data.synthetic import EVAL_SEED_START, Scene, SceneConfig, generate_scene
from qvggt_deploy.log import get_logger, progress
from qvggt_deploy.metrics.baselines import BASELINE_DESCRIPTIONS, BASELINES
from qvggt_deploy.metrics.summary import compute_metrics

logger = get_logger(__name__)

ModelFn = Callable[[torch.Tensor], Mapping[str, Any]]


def eval_scenes(num_scenes: int, frames: int = 4, seed: int = 0, image_size=(224, 224),
                config: Optional[SceneConfig] = None) -> Iterator[Scene]:
    """Yield ``num_scenes`` held-out generated scenes (rendered lazily, one at a time)."""
    cfg = config or SceneConfig(frames=frames, image_size=tuple(image_size))
    for i in range(num_scenes):
        yield generate_scene(EVAL_SEED_START + seed + i, cfg)


def torch_model_fn(model: torch.nn.Module, device: Optional[torch.device] = None,
                   dtype: Optional[torch.dtype] = None) -> ModelFn:
    """Wrap a VGGT module as a model callable (no grad, eval mode, optional autocast dtype)."""
    device = device or next(model.parameters()).device

    def run(images: torch.Tensor) -> Mapping[str, Any]:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                             enabled=dtype not in (None, torch.float32)):
            out = model(images.to(device))
        return {k: v.float().cpu() for k, v in out.items() if isinstance(v, torch.Tensor)}

    return run


def mean_metrics(rows: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """Mean of every numeric key over rows (NaNs skipped; a key missing everywhere is absent)."""
    keys: List[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if isinstance(v, (int, float)) and k not in keys and k not in ("seed", "scene")]
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if k in r and not math.isnan(float(r[k]))]
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out


def evaluate_model(model_fn: ModelFn, scenes: Iterable[Scene], baselines: Sequence[str] = ("trivial",),
                   max_points: int = 5000, seed: int = 0, total: Optional[int] = None) -> Dict[str, Any]:
    """Score ``model_fn`` (and the named baselines) on every scene.

    Args:
        model_fn: ``images [S,3,H,W]`` -> prediction dict (see :mod:`qvggt_deploy.metrics.summary`).
        scenes: scenes with ground truth (generated or read from disk).
        baselines: names from :data:`~qvggt_deploy.metrics.baselines.BASELINES`. Defaults to ("trivial",).
        max_points: points per cloud for Chamfer. Defaults to 5000.
        seed: Chamfer subsampling seed. Defaults to 0.
        total: number of scenes, for the progress bar only.

    Returns:
        ``{"num_scenes", "mean": {...}, "per_scene": [{"scene", "seed", ..., metrics}],
        "seconds_per_scene", "baselines": {name: {"description", "mean", "per_scene"}}}``.
    """
    rows: List[Dict[str, Any]] = []
    base_rows: Dict[str, List[Dict[str, Any]]] = {name: [] for name in baselines}
    model_time = 0.0
    for index, scene in enumerate(progress(scenes, desc="eval", total=total)):
        ident = {"scene": scene.meta.get("source", index), "seed": scene.meta.get("seed")}
        start = time.perf_counter()
        pred = model_fn(scene.images)
        model_time += time.perf_counter() - start
        rows.append({**ident, **compute_metrics(pred, scene, max_points=max_points, seed=seed)})
        for name in baselines:
            # Baseline points are its depth unprojected with its cameras: no separate depthcam_*.
            base_rows[name].append({**ident, **compute_metrics(BASELINES[name](scene), scene, max_points=max_points,
                                                               seed=seed, depthcam=False)})
    if not rows:
        logger.warning("no scenes to evaluate")
    return {
        "num_scenes": len(rows),
        "mean": mean_metrics(rows),
        "per_scene": rows,
        "seconds_per_scene": model_time / max(len(rows), 1),
        "baselines": {name: {"description": BASELINE_DESCRIPTIONS.get(name, ""), "mean": mean_metrics(r),
                             "per_scene": r} for name, r in base_rows.items()},
    }
