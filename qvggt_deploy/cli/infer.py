"""Run VGGT on a folder of images: cameras, depth maps and a point cloud.

Writes to --out: cameras.json (per frame: extrinsic camera-from-world [3x4], intrinsic [3x3],
the 9-d pose encoding, image name and network input size), depth/<NNN>_<name>.npy (float32
[H, W]) and a coloured depth/<NNN>_<name>.png, confidence maps conf/<NNN>_<name>.npy, and
points.ply (binary, coloured, confidence-filtered). Cameras are in the first frame's coordinate
system, at the model's normalised scale.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from qvggt_deploy.cli.args import add_device_args, add_model_args, apply_threads, resolve_device
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
        parser.add_argument("--out", required=True, help="output folder (created)")
        parser.add_argument("--mode", default="crop", choices=["crop", "pad"],
                            help="preprocessing as VGGT's loader: crop (width = model size) or pad to a square. "
                                 "Defaults to crop.")
        parser.add_argument("--max-frames", type=int, default=None, help="use only the first N images (sorted by name)")
        parser.add_argument("--conf-percentile", type=float, default=50.0,
                            help="drop points below this confidence percentile. Defaults to 50.")
        parser.add_argument("--points-from", default="depth", choices=["depth", "pointmap"],
                            help="point cloud from depth + predicted cameras, or from the point head. Defaults to depth.")
        parser.add_argument("--recipe", default=None,
                            help="quantization recipe folder: run the fake-quantized model it describes")
        add_device_args(parser)

    def run(self, args: argparse.Namespace) -> int:
        import numpy as np
        import torch

        from qvggt_deploy.data.images import list_images, load_and_preprocess_images
        from qvggt_deploy.data.writers import colorize_depth, write_npy, write_ply, write_png
        from qvggt_deploy.fileio import write_json
        from qvggt_deploy.geometry.predictions import cameras_from_pose_enc, point_cloud
        from qvggt_deploy.model.checkpoint import load_model

        apply_threads(args.threads)
        device = resolve_device(args.device)
        files = list_images(args.images)
        if args.max_frames:
            files = files[: args.max_frames]
        model = load_model(args.preset, args.checkpoint, device="cpu")
        if args.recipe:
            from qvggt_deploy.quant.recipe import apply_recipe, load_recipe

            apply_recipe(model, load_recipe(args.recipe))
        model = model.to(device)
        images = load_and_preprocess_images(files, mode=args.mode, target_size=model.cfg.img_size,
                                            patch=model.cfg.patch_size)
        H, W = images.shape[-2:]
        logger.info("%d images -> %dx%d (HxW), preset %s, device %s, %s", len(files), H, W,
                    args.preset, device, args.dtype)
        with torch.inference_mode(), autocast_context(device, args.dtype):
            pred = model(images.to(device))
        pred = {k: v.detach().float().cpu() for k, v in pred.items() if torch.is_tensor(v)}

        out = Path(args.out)
        extrinsics, intrinsics = cameras_from_pose_enc(pred["pose_enc"][0], (H, W))
        frames = []
        for i, path in enumerate(progress(files, desc="writing")):
            stem = f"{i:03d}_{path.stem}"
            depth = pred["depth"][0, i, ..., 0].numpy()
            write_npy(out / "depth" / f"{stem}.npy", depth.astype(np.float32))
            write_png(out / "depth" / f"{stem}.png", colorize_depth(depth))
            write_npy(out / "conf" / f"{stem}.npy", pred["depth_conf"][0, i].numpy().astype(np.float32))
            frames.append({
                "image": path.name,
                "extrinsic": extrinsics[i].tolist(),
                "intrinsic": intrinsics[i].tolist(),
                "pose_enc": pred["pose_enc"][0, i].tolist(),
            })
        write_json(out / "cameras.json", {
            "convention": "OpenCV camera axes; extrinsic = camera-from-world [R|t]; world = first camera; "
                          "normalised (non-metric) scale",
            "image_size_hw": [int(H), int(W)],
            "preset": args.preset,
            "frames": frames,
        })
        points, colors = point_cloud(pred, args.points_from, args.conf_percentile)
        if len(points) == 0:
            raise QvggtError("the confidence filter removed every point; lower --conf-percentile")
        write_ply(out / "points.ply", points, colors)
        print(f"{len(files)} frames -> {out}: cameras.json, depth/*.npy|png, conf/*.npy, "
              f"points.ply ({len(points)} points)")
        return 0
