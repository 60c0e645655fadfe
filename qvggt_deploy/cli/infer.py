"""Run VGGT on a folder of images with PyTorch, ONNX Runtime or TensorRT: cameras, depth maps and
a point cloud, plus a COLMAP model or a GLB scene.

Writes the folder --out whole (built beside it, renamed into place once complete; an earlier
infer folder there is replaced, anything else refused); its contents are the same for every
backend (:mod:`qvggt_deploy.outputs.folder`). Cameras are in the first frame's coordinate
system, at the model's normalised scale.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from qvggt_deploy.backends import BACKENDS
from qvggt_deploy.cli.args import (add_device_args, add_force_arg, add_model_args, add_out_arg, apply_threads,
                                   in_range, positive_int, resolve_device)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.outputs import FORMATS

logger = get_logger(__name__)

DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


class Infer(Command):
    """Run VGGT on a folder of images (PyTorch, ONNX Runtime or TensorRT): cameras, depth, points.

    Outputs land in --out, the same for every backend: cameras.json (extrinsics
    camera-from-world, intrinsics, pose encoding, placement in the photo per frame),
    depth/NNN_name.npy and .png, conf/NNN_name.npy and .png, points.ply; with --format colmap
    also sparse/{cameras,images,points3D}.txt (COLMAP's text model at the photos' resolution),
    with --format glb scene.glb (points and camera frustums).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        parser.add_argument("--backend", default="torch", choices=list(BACKENDS),
                            help="torch (--preset/--checkpoint/--recipe), ort (an exported .onnx) or trt "
                                 "(a TensorRT engine). Defaults to torch.")
        parser.add_argument("--model", default=None,
                            help="the file the ort or trt backend runs: .onnx from qvggt export, .engine from "
                                 "qvggt build-engine (its fixed input size decides the preprocessing size)")
        parser.add_argument("--format", action="append", default=[], choices=list(FORMATS),
                            help="also write a COLMAP text model (sparse/) or a GLB scene (scene.glb); repeatable")
        parser.add_argument("--images", required=True, help="folder of images (jpg/png/...); all are one sequence")
        add_out_arg(parser, "folder", "the reconstruction (cameras.json, depth/, conf/, points.ply, ...)")
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
        import torch

        from qvggt_deploy.backends.limits import check_fits, forward_bytes
        from qvggt_deploy.data.images import list_images
        from qvggt_deploy.fileio import atomic_dir, check_output_dir
        from qvggt_deploy.infer.photos import reconstruct
        from qvggt_deploy.infer.runners import describe_model, make_runner
        from qvggt_deploy.model.presets import get_preset
        from qvggt_deploy.outputs.folder import check_formats, write_infer_folder

        out = check_output_dir(args.out, ours=is_infer_dir, what="qvggt infer output folder (no cameras.json)",
                               force=args.force)
        apply_threads(args.threads)
        device = resolve_device(args.device)
        files = list_images(args.images)
        if args.max_frames:
            files = files[: args.max_frames]
        formats = list(dict.fromkeys(args.format))
        check_formats(formats, [f.name for f in files])
        info = describe_model(args.backend, args.model, args.preset)
        cfg = get_preset(info.preset)
        check_images(files, cfg.patch_size)
        H, W = info.size_hw or (cfg.img_size, cfg.img_size)
        check_fits(forward_bytes(cfg, H, W, len(files)), f"inference on {len(files)} images",
                   "use --max-frames to take fewer")
        if info.preset == "tiny" and not (args.backend == "torch" and args.checkpoint):
            logger.warning(TINY_ON_PHOTOS)
        runner = make_runner(info, checkpoint=args.checkpoint, recipe=args.recipe, device=device,
                             dtype=DTYPES[args.dtype], threads=args.threads,
                             allow_random=args.allow_random_weights)
        recon = reconstruct(runner, files, mode=args.mode, target_size=cfg.img_size, patch=cfg.patch_size)
        check_finite({k: torch.from_numpy(v) for k, v in recon.arrays().items()}, args)

        # Everything is computed before anything is written: a failure leaves --out as it was.
        points = recon.points(args.points_from, args.conf_percentile)
        if len(points) == 0:
            raise QvggtError(f"--conf-percentile {args.conf_percentile:g} removed every point; lower it")
        meta = {"backend": args.backend, "model": str(info.model) if info.model else None, "preset": info.preset,
                "checkpoint": args.checkpoint, "recipe": args.recipe, "points_from": args.points_from,
                "conf_percentile": args.conf_percentile}
        with atomic_dir(out, ours=is_infer_dir, force=args.force) as tmp:
            summary = write_infer_folder(tmp, recon, points, formats, meta)
        print(f"{len(files)} frames ({args.backend}) -> {out}: {', '.join(summary['files'])} "
              f"({summary['points']} points)")
        return 0


MANIFEST = "cameras.json"
TINY_ON_PHOTOS = ("the tiny preset (the embedded model) was trained on generated scenes only: on real photos its "
                  "depth maps are noise and its cameras near identity; for real photos use --preset vggt-1b "
                  "--checkpoint facebook/VGGT-1B")


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
