"""Benchmark evaluation: a model over a dataset reader's sequences, resumable and sharded.

Per sequence (in the reader's key order) the seeded frames are read, preprocessed as VGGT's
evaluation (``crop``, the model's width), run through the model once and scored; the row (the
metrics and the per-pair camera errors) is appended to ``OUT/rows/rank<r>.jsonl`` as soon as it
is done, so a rerun with the same settings skips finished sequences. Then rank 0 merges every
row into ``OUT/results.json`` and ``OUT/results.md``:

- camera metrics (RRA/RTA/AUC) of a category pool the pairs of all its sequences, as VGGT's
  CO3Dv2 evaluation; other metrics are means over the category's sequences;
- the mean over categories (CO3Dv2's "Mean AUC"; the other benchmarks have one category).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from qvggt_deploy.datasets.base import DatasetReader
from qvggt_deploy.datasets.distributed import Shard
from qvggt_deploy.datasets.sample import load_scene
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger, progress

logger = get_logger(__name__)

ModelFn = Callable[[Any], Mapping[str, Any]]
RUN_FILE = "run.json"
ROWS_DIR = "rows"
FORMAT = "qvggt-benchmark-run"
#: settings that change the numbers; a resumed run must match them (device and threads do not).
RESULT_SETTINGS = ("dataset", "root", "reader_options", "num_frames", "seed", "max_points", "backend", "model",
                   "preset", "checkpoint", "recipe", "dtype", "limit")


def is_run_dir(path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def score_sample(pred: Mapping[str, Any], scene, reader: DatasetReader, max_points: int = 5000,
                 seed: int = 0) -> Dict[str, Any]:
    """Metrics of one prediction plus the per-pair camera errors (for pooling)."""
    import torch

    from qvggt_deploy.metrics.camera import camera_metrics_from_errors, relative_pose_errors
    from qvggt_deploy.metrics.summary import compute_metrics, predicted_cameras

    H, W = scene.images.shape[-2:]
    cams = predicted_cameras(pred, (H, W))
    if not cams:
        raise QvggtError("the model's outputs have no cameras (pose_enc or extrinsics)")
    rre, rte = relative_pose_errors(cams["extrinsics"], scene.extrinsics)
    metrics = camera_metrics_from_errors(rre, rte)
    if scene.meta.get("has_depth"):
        if not bool(torch.as_tensor(scene.mask).any()):
            raise QvggtError(f"{scene.meta.get('source')}: the ground-truth depth of the sampled frames has "
                             f"no valid pixel")
        metrics.update(compute_metrics(pred, scene, max_points=max_points, seed=seed, max_dist=reader.max_dist))
    return {"metrics": metrics, "rre": [float(x) for x in rre], "rte": [float(x) for x in rte]}


def _read_rows(out: Path) -> Dict[str, Dict[str, Any]]:
    rows: Dict[str, Dict[str, Any]] = {}
    folder = out / ROWS_DIR
    if not folder.is_dir():
        return rows
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by an interrupt: that sequence runs again
            if isinstance(row, dict) and "key" in row:
                rows[row["key"]] = row
    return rows


def _start_run(out: Path, settings: Dict[str, Any], shard: Shard) -> None:
    """Record the settings (rank 0) or check that a resumed run used the same ones."""
    from qvggt_deploy.fileio import write_json

    wanted = {k: settings.get(k) for k in RESULT_SETTINGS}
    if shard.rank == 0:
        run_file = out / RUN_FILE
        if run_file.is_file():
            try:
                had = json.loads(run_file.read_text(encoding="utf-8")).get("settings", {})
            except ValueError as exc:
                raise QvggtError(f"{run_file}: unreadable ({exc}); use another --out") from exc
            diff = [k for k in RESULT_SETTINGS if had.get(k) != wanted[k]]
            if diff:
                raise QvggtError(f"{out} holds a run with other settings ({', '.join(diff)} differ: "
                                 f"{had.get(diff[0])!r} there, {wanted[diff[0]]!r} now); use another --out")
        elif out.exists() and not out.is_dir():
            raise QvggtError(f"--out {out} is a file; the run needs a folder")
        elif out.exists() and any(out.iterdir()):
            raise QvggtError(f"--out {out} is a folder with other content (no {RUN_FILE}); use an empty or new folder")
        else:
            out.mkdir(parents=True, exist_ok=True)
            write_json(run_file, {"format": FORMAT, "settings": wanted})
        (out / ROWS_DIR).mkdir(exist_ok=True)
    shard.barrier()


def evaluate_dataset(reader: DatasetReader, model_fn: ModelFn, out, settings: Dict[str, Any], *,
                     target_size: int, patch: int = 14, size_hw: Optional[Tuple[int, int]] = None,
                     shard: Optional[Shard] = None) -> Optional[Dict[str, Any]]:
    """Evaluate ``model_fn`` on ``reader``'s sequences into ``out`` (see module docstring).

    Args:
        reader: an opened dataset (:func:`qvggt_deploy.datasets.open_dataset`).
        model_fn: ``images [S,3,H,W]`` float32 in [0, 1] -> VGGT output dict.
        out: run folder (created; resumed when it holds a run with the same settings).
        settings: at least ``num_frames``, ``seed``, ``max_points``, ``limit`` and the keys of
            :data:`RESULT_SETTINGS` (recorded and checked on resume).
        target_size, patch, size_hw: preprocessing (see :func:`~qvggt_deploy.datasets.sample.load_scene`).
        shard: this process's share (torchrun); rank 0 merges. Defaults to the whole.

    Returns:
        The merged result on rank 0, None on the other ranks.
    """
    out = Path(out)
    shard = shard or Shard()
    _start_run(out, settings, shard)
    keys = select_keys(reader.keys(), settings.get("limit"))
    done = _read_rows(out)
    mine = [k for i, k in enumerate(keys) if shard.owns(i) and k not in done]
    if done and shard.rank == 0:
        logger.info("resuming: %d of %d sequences already done", sum(k in done for k in keys), len(keys))
    rows_path = out / ROWS_DIR / f"rank{shard.rank}.jsonl"
    cut = False
    if rows_path.is_file() and rows_path.stat().st_size:
        with open(rows_path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"  # a line cut by an interrupt must not swallow the next row
    with open(rows_path, "a", encoding="utf-8") as rows_file:
        if cut:
            rows_file.write("\n")
        for key in progress(mine, desc=f"{reader.name} (rank {shard.rank})" if shard.world_size > 1 else reader.name,
                            total=len(mine)):
            row = _evaluate_key(reader, key, model_fn, settings, target_size, patch, size_hw)
            rows_file.write(json.dumps(row) + "\n")
            rows_file.flush()
            os.fsync(rows_file.fileno())
    shard.barrier()
    if shard.rank != 0:
        return None
    rows = _read_rows(out)
    missing = [k for k in keys if k not in rows]
    if missing:
        raise QvggtError(f"{len(missing)} sequence(s) have no result in {out / ROWS_DIR} (first: {missing[0]}); "
                         f"run again to finish them")
    result = merge_rows(reader, [rows[k] for k in keys], settings)
    from qvggt_deploy.datasets.tables import result_markdown
    from qvggt_deploy.fileio import write_json, write_text

    write_json(out / "results.json", result)
    write_text(out / "results.md", result_markdown(result))
    return result


def select_keys(keys: List[str], limit: Optional[int]) -> List[str]:
    """At most ``limit`` sequences per category, in order (the official ``--fast_eval`` takes 10)."""
    if not limit:
        return list(keys)
    taken: Dict[str, int] = {}
    chosen = []
    for key in keys:
        category = key.split("/", 1)[0]
        if taken.get(category, 0) < limit:
            chosen.append(key)
            taken[category] = taken.get(category, 0) + 1
    return chosen


def _evaluate_key(reader, key, model_fn, settings, target_size, patch, size_hw) -> Dict[str, Any]:
    category = key.split("/", 1)[0]
    sample = reader.sample(key, settings["num_frames"], settings["seed"])
    if isinstance(sample, str):
        return {"key": key, "category": category, "skipped": sample}
    scene = load_scene(sample, target_size, patch, size_hw)
    start = time.perf_counter()
    pred = model_fn(scene.images)
    seconds = time.perf_counter() - start
    scored = score_sample(pred, scene, reader, settings["max_points"], settings["seed"])
    return {"key": key, "category": category, "frames": sample.frame_ids, "seconds": seconds, **scored}


def _mean(values: List[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def merge_rows(reader: DatasetReader, rows: List[Dict[str, Any]], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Per-category and mean metrics from per-sequence rows (module docstring)."""
    from qvggt_deploy.metrics.camera import camera_metrics_from_errors

    scored = [r for r in rows if "metrics" in r]
    if not scored:
        raise QvggtError(f"no {reader.name} sequence could be evaluated (all {len(rows)} skipped by the protocol)")
    per_category: Dict[str, Dict[str, Any]] = {}
    for category in dict.fromkeys(r["category"] for r in scored):
        cat_rows = [r for r in scored if r["category"] == category]
        pooled = camera_metrics_from_errors([e for r in cat_rows for e in r["rre"]],
                                            [e for r in cat_rows for e in r["rte"]])
        keys = dict.fromkeys(k for r in cat_rows for k in r["metrics"])
        entry = {k: _mean([float(r["metrics"].get(k, float("nan"))) for r in cat_rows]) for k in keys}
        entry.update(pooled)
        entry["sequences"] = len(cat_rows)
        per_category[category] = entry
    metric_keys = [k for k in next(iter(per_category.values())) if k != "sequences"]
    mean = {k: _mean([c.get(k, float("nan")) for c in per_category.values()]) for k in metric_keys}
    return {
        "format": "qvggt-benchmark-result",
        "dataset": reader.name,
        "metrics": [k for k in reader.metrics if k in mean],
        "units": reader.units,
        "num_sequences": len(scored),
        "mean": mean,
        "per_category": per_category,
        "skipped": {r["key"]: r["skipped"] for r in rows if "skipped" in r},
        "per_sequence": [{k: v for k, v in r.items() if k not in ("rre", "rte")} for r in scored],
        "seconds_per_sequence": _mean([r["seconds"] for r in scored]),
        "settings": settings,
    }
