"""``qvggt sensitivity``: per-block quantization sensitivity (JSON ranking + bar chart)."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import add_threads_arg, add_model_args, apply_threads, positive_int, resolve_device
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import add_calib_data_args
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Sensitivity(Command):
    """Rank blocks by how much quantizing each alone (RTN) hurts the heads.

    For every unit (ViT block, frame/global block, camera-head trunk block, the camera head's
    other Linears) and precision, the unit alone is quantized and the task loss (camera, depth,
    points vs FP32, plus the change of cross-head consistency) is measured on calibration scenes.
    Writes --json (table + ranking; `qvggt calibrate --sensitivity` reuses it) and --png (bar chart).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        add_calib_data_args(parser)
        parser.add_argument("--precisions", default="fp16,w8a16,w4a16",
                            help="precisions to measure. Defaults to fp16,w8a16,w4a16.")
        parser.add_argument("--group", type=positive_int, default=128, help="weight group size. Defaults to 128.")
        parser.add_argument("--act-granularity", default="per_tensor", choices=["per_tensor", "per_token"],
                            help="for A8 precisions. Defaults to per_tensor.")
        parser.add_argument("--json", required=True, help="output JSON")
        parser.add_argument("--png", default=None, help="output bar chart (PNG)")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.cli.calib_args import load_calib_scenes
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.quant.config import get_precision
        from qvggt_deploy.quant.sensitivity import measure_sensitivity, save_sensitivity

        from qvggt_deploy.fileio import check_output_file

        check_output_file(args.json, what="JSON file", option="--json")
        if args.png:
            check_output_file(args.png, what="PNG file", option="--png")
        apply_threads(args.threads)
        device = resolve_device(args.device)
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
        for p in precisions:
            if get_precision(p).name == "fp32":
                raise QvggtError("--precisions: fp32 is the reference, not an option")
        model = load_model(args.preset, args.checkpoint, device=device, allow_random=args.allow_random_weights)
        scenes, _ = load_calib_scenes(args, model, device)
        result = measure_sensitivity(model, scenes, precisions, args.group, act_granularity=args.act_granularity)
        result["settings"] = {"preset": args.preset, "checkpoint": args.checkpoint or "embedded",
                              "calib": args.calib or "synthetic", "scenes": len(scenes), "seed": args.seed}
        save_sensitivity(result, args.json, args.png)
        lowest = result["ranking"]
        logger.info("most sensitive: %s", ", ".join(lowest[:5]))
        logger.info("sensitivity -> %s%s", args.json, f", {args.png}" if args.png else "")
        return 0
