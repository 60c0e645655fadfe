"""From command-line choices to a benchmark run: the runner of the chosen backend (PyTorch with a
preset, checkpoint and recipe; an exported ONNX file; a TensorRT engine), the preprocessing size it
needs, the process shard under torchrun, and :func:`~qvggt_deploy.datasets.evaluate.evaluate_dataset`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from qvggt_deploy.errors import QvggtError


def method_label(recipe=None, model=None, dtype: Optional[str] = None) -> str:
    """Row label for tables: the recipe's method and bit widths ("awq W4A16"), the model file's
    name, or the float model ("FP32", "BF16", ...)."""
    if recipe:
        path = Path(recipe) / "recipe.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Path(recipe).name
        method = doc.get("method")
        name = method.get("name") if isinstance(method, dict) else method
        precisions = sorted({str(v.get("precision", "")).upper() for v in doc.get("layers", {}).values()
                             if str(v.get("precision", "")).startswith("w")})
        return " ".join(x for x in [str(name or Path(recipe).name), "/".join(precisions)] if x)
    if model:
        return Path(model).name
    return {None: "FP32", "bfloat16": "BF16", "float16": "FP16"}.get(dtype, str(dtype).upper())


def run_benchmark(dataset: str, root, out, *, num_frames: int = 10, seed: int = 0, limit: Optional[int] = None,
                  backend: str = "torch", model=None, preset: str = "tiny", checkpoint=None, recipe=None,
                  dtype: Optional[str] = None, device="cpu", threads: Optional[int] = None,
                  max_points: int = 5000, reader_options: Optional[Dict[str, Any]] = None,
                  label: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Evaluate one model on one benchmark into the run folder ``out`` (rank 0 returns the result).

    Args:
        dataset: "co3d", "re10k", "dtu" or "eth3d"; ``root`` its folder in the official layout.
        num_frames: frames sampled per sequence (official: 10). seed: frame sampling seed.
        limit: at most this many sequences per category (None = all).
        backend, model, preset, checkpoint, recipe, dtype, device, threads: as ``qvggt infer``.
        max_points: points per cloud for the point metrics.
        reader_options: keyword arguments of the reader (e.g. ``categories`` for CO3Dv2).
        label: the method's name in tables. Defaults to :func:`method_label`.
    """
    import torch

    from qvggt_deploy.datasets import open_dataset
    from qvggt_deploy.datasets.distributed import init_shard, local_device
    from qvggt_deploy.datasets.evaluate import evaluate_dataset
    from qvggt_deploy.infer.runners import describe_model, make_runner
    from qvggt_deploy.model.presets import get_preset

    if num_frames < 2:
        raise QvggtError(f"--num-frames must be at least 2 (pairs of frames are scored), got {num_frames}")
    reader = open_dataset(dataset, root, **(reader_options or {}))
    info = describe_model(backend, model, preset)
    cfg = get_preset(info.preset)
    device = local_device(device)
    shard = init_shard(device.type)
    try:
        runner = make_runner(info, checkpoint=checkpoint, recipe=recipe, device=device, dtype=dtype, threads=threads)
        settings = {"dataset": dataset, "root": str(Path(root).resolve()), "reader_options": reader_options or {},
                    "num_frames": num_frames, "seed": seed, "max_points": max_points, "limit": limit,
                    "backend": backend, "model": str(Path(model).resolve()) if model else None,
                    "preset": info.preset, "checkpoint": str(checkpoint) if checkpoint else None,
                    "recipe": str(Path(recipe).resolve()) if recipe else None, "dtype": dtype,
                    "method": label or method_label(recipe, model, dtype), "device": str(device),
                    "processes": shard.world_size}
        with runner:
            def model_fn(images: torch.Tensor):
                return runner.infer({"images": images.numpy().astype("float32")})

            return evaluate_dataset(reader, model_fn, out, settings, target_size=cfg.img_size,
                                    patch=cfg.patch_size, size_hw=info.size_hw, shard=shard)
    finally:
        shard.close()
