"""Run VGGT on a folder of images: cameras, depth maps and a point cloud.

Writes the folder --out whole (built beside it, renamed into place once complete; an earlier
infer folder there is replaced, anything else refused): cameras.json (per frame: extrinsic camera-from-world [3x4], intrinsic [3x3],
the 9-d pose encoding, image name and network input size), depth/<NNN>_<name>.npy (float32
[H, W]) and a coloured depth/<NNN>_<name>.png, confidence maps conf/<NNN>_<name>.npy, and
points.ply (binary, coloured, confidence-filtered). Cameras are in the first frame's coordinate
system, at the model's normalised scale.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from qvggt_deploy.cli.args import (add_device_args, add_force_arg, add_model_args, apply_threads, in_range,
                                   positive_int, resolve_device)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger, progress

logger = get_logger(__name__)

DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def autocast_context(device, dtype_name: str):
    """Autocast for the aggregator's matmuls (heads stay fp32 inside the model)."""
    import torch

    if DTYPES[dtype_name] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, DTYPES[dtype_name]))


class Infer(Command):
    """Run VGGT on a folder of images: cameras (JSON), depth maps (.npy + PNG), point cloud (PLY).

    Outputs land in --out: cameras.json (extrinsics camera-from-world, intrinsics, pose
    encoding per frame), depth/NNN_name.npy and .png, conf/NNN_name.npy, points.ply.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        parser.add_argument("--images", required=True, help="folder of images (jpg/png/...); all are one sequence")
        parser.add_argument("--out", required=True,
                            help="output folder (created; an earlier infer folder there is replaced whole)")
        add_force_arg(parser, "an infer output folder")
        parser.add_argument("--mode", default="crop", choices=["crop", "pad"],
                            help="preprocessing as VGGT's loader: crop (width = model size) or pad to a square. "
                                 "Defaults to crop.")
        parser.add_argument("--max-frames", type=positive_int, default=None,
                            help="use only the first N images (sorted by name)")
        parser.add_argument("--conf-percentile", type=in_range(0, 100), default=50.0,
                            help="drop points below this confidence percentile. Defaults to 50.")
        parser.add_argument("--points-from", default="depth", choices=["depth", "pointmap"],
                            help="point cloud from depth + predicted cameras, or from the point head. Defaults to depth.")
        parser.add_argument("--recipe", default=None,
                            help="quantization recipe folder: run the quantized model it describes (on cuda "
                                 "its W4A16 layers use the W4A16 GEMM kernel; on cpu the fake-quantized model)")
        add_device_args(parser)

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np
        import torch

        from qvggt_deploy.cli.limits import check_fits, forward_bytes
        from qvggt_deploy.data.images import list_images, load_and_preprocess_images
        from qvggt_deploy.data.writers import colorize_depth, write_npy, write_ply, write_png
        from qvggt_deploy.fileio import atomic_dir, check_output_dir, write_json
        from qvggt_deploy.geometry.predictions import cameras_from_pose_enc, point_cloud
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.model.presets import get_preset

        out = check_output_dir(args.out, ours=is_infer_dir, what="qvggt infer output folder (no cameras.json)",
                               force=args.force)
        apply_threads(args.threads)
        device = resolve_device(args.device)
        files = list_images(args.images)
        if args.max_frames:
            files = files[: args.max_frames]
        cfg = get_preset(args.preset)
        check_images(files, cfg.patch_size)
        size = cfg.img_size
        check_fits(forward_bytes(cfg, size, size, len(files)), f"inference on {len(files)} images",
                   "use --max-frames to take fewer")
        model = load_model(args.preset, args.checkpoint, device=device)
        if args.recipe:
            from qvggt_deploy.quant.recipe import apply_recipe, load_recipe

            recipe = load_recipe(args.recipe)
            if device.type == "cuda":  # the real W4A16 kernel; on the CPU the fake-quantized model
                from qvggt_deploy.ops.linear import apply_recipe_with_kernel

                apply_recipe_with_kernel(model, recipe)
            else:
                apply_recipe(model, recipe)
        images = load_and_preprocess_images(files, mode=args.mode, target_size=model.cfg.img_size,
                                            patch=model.cfg.patch_size)
        H, W = images.shape[-2:]
        logger.info("%d images -> %dx%d (HxW), preset %s, device %s, %s", len(files), H, W,
                    args.preset, device, args.dtype)
        with torch.inference_mode(), autocast_context(device, args.dtype):
            pred = model(images.to(device))
        pred = {k: v.detach().float().cpu() for k, v in pred.items() if torch.is_tensor(v)}
        check_finite(pred, args)

        # Everything is computed before anything is written: a failure leaves --out as it was.
        extrinsics, intrinsics = cameras_from_pose_enc(pred["pose_enc"][0], (H, W))
        points, colors = point_cloud(pred, args.points_from, args.conf_percentile)
        if len(points) == 0:
            raise QvggtError(f"--conf-percentile {args.conf_percentile:g} removed every point; lower it")
        frames = []
        with atomic_dir(out, ours=is_infer_dir, force=args.force) as tmp:
            for i, path in enumerate(progress(files, desc="writing")):
                stem = f"{i:03d}_{path.stem}"
                depth = pred["depth"][0, i, ..., 0].numpy()
                write_npy(tmp / "depth" / f"{stem}.npy", depth.astype(np.float32))
                write_png(tmp / "depth" / f"{stem}.png", colorize_depth(depth))
                write_npy(tmp / "conf" / f"{stem}.npy", pred["depth_conf"][0, i].numpy().astype(np.float32))
                frames.append({
                    "image": path.name,
                    "extrinsic": extrinsics[i].tolist(),
                    "intrinsic": intrinsics[i].tolist(),
                    "pose_enc": pred["pose_enc"][0, i].tolist(),
                })
            write_ply(tmp / "points.ply", points, colors)
            write_json(tmp / MANIFEST, {
                "tool": "qvggt infer",
                "convention": "OpenCV camera axes; extrinsic = camera-from-world [R|t]; world = first camera; "
                              "normalised (non-metric) scale",
                "image_size_hw": [int(H), int(W)],
                "preset": args.preset,
                "frames": frames,
            })
        print(f"{len(files)} frames -> {out}: cameras.json, depth/*.npy|png, conf/*.npy, "
              f"points.ply ({len(points)} points)")
        return 0


MANIFEST = "cameras.json"


def is_infer_dir(path) -> bool:
    """A folder `qvggt infer` wrote: its cameras.json has the image size and the frames."""
    from qvggt_deploy.fileio import read_json_or_none

    doc = read_json_or_none(Path(path) / MANIFEST)
    return isinstance(doc, dict) and "frames" in doc and "image_size_hw" in doc


def check_images(files, patch: int) -> None:
    """Read every image's header before the model runs: unreadable files, decompression bombs
    and images smaller than a patch (upscaled into a blur) are found before any work."""
    from PIL import Image, UnidentifiedImageError

    for path in files:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Image.DecompressionBombError as exc:
            raise QvggtError(f"{path}: refused as a possible decompression bomb ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise QvggtError(f"cannot read image {path}: {exc}") from None
        if min(w, h) < patch:
            logger.warning("%s is only %dx%d pixels; it is upscaled to the model's size and carries "
                           "little information", path, w, h)


def check_finite(pred, args) -> None:
    """NaN or Inf in an output means broken weights or recipe, not a confidence setting."""
    import torch

    for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        value = pred.get(key)
        if value is None:
            continue
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            source = f"recipe {args.recipe}" if args.recipe else f"checkpoint {args.checkpoint or 'embedded'}"
            raise QvggtError(f"the model's output {key} has {bad} NaN/Inf values of {value.numel()}: "
                             f"the weights ({source}) are broken; nothing was written")
