"""``qvggt sensitivity``: per-block quantization sensitivity (JSON ranking + bar chart)."""
from __future__ import annotations

import argparse
from pathlib import Path

from qvggt_deploy.cli.args import (add_deprecated_arg, add_force_arg, add_model_args, add_out_arg, add_threads_arg,
                                   apply_threads, model_source, positive_int, resolve_device, warn_deprecated)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import add_calib_data_args, calib_data
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

JSON, PNG = "sensitivity.json", "sensitivity.png"


class Sensitivity(Command):
    """Rank blocks by how much quantizing each alone (RTN) hurts the heads.

    For every unit (ViT block, frame/global block, camera-head trunk block, the camera head's
    other Linears) and precision, the unit alone is quantized and the task loss (camera, depth,
    points vs FP32, plus the change of cross-head consistency) is measured on calibration scenes.
    Writes OUT/sensitivity.json (table + ranking; `qvggt calibrate --sensitivity OUT` reuses it)
    and OUT/sensitivity.png (bar chart, with matplotlib: the [plots] extra).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        add_calib_data_args(parser)
        parser.add_argument("--precisions", default="fp16,w8a16,w4a16",
                            help="precisions to measure. Defaults to fp16,w8a16,w4a16.")
        parser.add_argument("--group", type=positive_int, default=128, help="weight group size. Defaults to 128.")
        parser.add_argument("--act-granularity", default="per_tensor", choices=["per_tensor", "per_token"],
                            help="for A8 precisions. Defaults to per_tensor.")
        target = parser.add_mutually_exclusive_group(required=True)
        add_out_arg(target, "folder", f"the table ({JSON}) and its chart ({PNG})", required=False)
        add_deprecated_arg(target, "--json", "--out DIR", default=None, metavar="FILE")
        add_deprecated_arg(parser, "--png", "--out DIR", default=None, metavar="FILE")
        add_force_arg(parser, "a sensitivity folder")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.backends.limits import check_calibration_fits
        from qvggt_deploy.fileio import atomic_dir, check_output_dir, check_output_file
        from qvggt_deploy.quant.run import SensitivityOptions, parse_precisions, sensitivity_table
        from qvggt_deploy.quant.sensitivity import save_sensitivity

        if args.png and not args.json:
            raise QvggtError("--png goes with --json (both deprecated); --out DIR writes the table and the chart")
        if args.out:
            check_output_dir(args.out, ours=JSON, what="sensitivity folder (no sensitivity.json)", force=args.force)
        else:
            warn_deprecated("--json/--png", "--out DIR")
            check_output_file(args.json, what="JSON file", option="--json")
            if args.png:
                check_output_file(args.png, what="PNG file", option="--png")
        apply_threads(args.threads)
        opts = SensitivityOptions(model=model_source(args), data=calib_data(args),
                                  precisions=parse_precisions(args.precisions, "--precisions"), group=args.group,
                                  act_granularity=args.act_granularity, device=resolve_device(args.device))
        result = sensitivity_table(opts, check_calibration_fits)
        if args.out:
            png = PNG if chart_available() else None
            with atomic_dir(args.out, ours=JSON, force=args.force) as tmp:
                save_sensitivity(result, tmp / JSON, tmp / png if png else None)
            written = [str(Path(args.out) / JSON)] + ([str(Path(args.out) / png)] if png else [])
        else:
            save_sensitivity(result, args.json, args.png)
            written = [args.json] + ([args.png] if args.png else [])
        logger.info("sensitivity -> %s", ", ".join(written))
        return 0


def chart_available() -> bool:
    """Whether matplotlib is there for the chart; without it the table alone is written."""
    from qvggt_deploy.lazy import is_available

    if is_available("matplotlib"):
        return True
    logger.warning("no %s: matplotlib is not installed (pip install 'qvggt-deploy[plots]')", PNG)
    return False
