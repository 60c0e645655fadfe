"""Option groups of the quantization commands (calibrate, sensitivity, ablate), declared once:
calibration data, method and its switches, mixed-precision budget."""
from __future__ import annotations

import argparse
from typing import List, Tuple

from qvggt_deploy.cli.args import image_side, nonneg_int, positive_float, positive_int
from qvggt_deploy.errors import QvggtError


def add_calib_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("calibration data")
    src = group.add_mutually_exclusive_group()
    src.add_argument("--calib", default=None,
                     help="folder of scene folders or of images/sequences (see docs/scenes.md)")
    src.add_argument("--synthetic", type=positive_int, default=None,
                     help="N generated calibration scenes (seeds 5*10^8 + SEED + i, disjoint from training "
                          "and evaluation). Default when --calib is not given: 8.")
    group.add_argument("--calib-batches", type=positive_int, default=8,
                       help="sequences drawn from --calib. Defaults to 8.")
    group.add_argument("--frames", type=positive_int, default=4, help="frames per calibration scene. Defaults to 4.")
    group.add_argument("--image-size", type=image_side, default=None,
                       help="calibration image size (a multiple of 14). Defaults to the preset's img_size.")
    group.add_argument("--seed", type=int, default=0, help="data and sampling seed. Defaults to 0.")


def calib_data(args):
    """The calibration-data options as :class:`~qvggt_deploy.quant.run.CalibData`."""
    from qvggt_deploy.quant.run import CalibData

    return CalibData(calib=args.calib, synthetic=args.synthetic, calib_batches=args.calib_batches,
                     frames=args.frames, image_size=args.image_size, seed=args.seed)


def load_calib_scenes(args, model, device) -> Tuple[List, str]:
    """The calibration scenes of the command line (memory estimate and --group checked first)."""
    from qvggt_deploy.backends.limits import check_calibration_fits
    from qvggt_deploy.quant.run import calibration_scenes

    return calibration_scenes(model, calib_data(args), device, getattr(args, "group", None), check_calibration_fits)


def add_method_args(parser: argparse.ArgumentParser) -> None:
    from qvggt_deploy.quant.calibrate import DEFAULT_METHOD, METHODS

    group = parser.add_argument_group("method")
    group.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                       help=f"rtn (round to nearest), awq (scale + clip search), qvggt (awq + token filtering "
                            f"with compensation + task-aware search; measured no better than awq on the "
                            f"embedded model, docs/method.md#results). Defaults to {DEFAULT_METHOD}.")
    group.add_argument("--wbits", type=int, default=4, choices=[4, 8], help="weight bits. Defaults to 4.")
    group.add_argument("--abits", type=int, default=None, choices=[8],
                       help="activation bits (W4A8/W8A8). Defaults to none (weight-only).")
    group.add_argument("--group", type=positive_int, default=128,
                       help="group size along the input dim (32, 64, 128). Defaults to 128.")
    group.add_argument("--act-granularity", default="per_tensor", choices=["per_tensor", "per_token"],
                       help="INT8 activations: static per tensor or dynamic per token. Defaults to per_tensor.")
    group.add_argument("--act-calib", default="mse", choices=["mse", "percentile"],
                       help="static activation scale search. Defaults to mse.")
    sw = parser.add_argument_group("method switches (ablations)")
    for name, what in (("smooth", "AWQ scale search"), ("clip-search", "AWQ per-group clip search"),
                       ("token-filter", "token filtering"), ("task-search", "task-aware search")):
        sw.add_argument(f"--no-{name}", action="store_true", help=f"turn off {what}")
    sw.add_argument("--comp-directions", type=nonneg_int, default=2,
                    help="principal directions k of the compensation rows (2k+1 rows; 0 = filtering without "
                         "compensation). Defaults to 2.")
    sw.add_argument("--grid", type=positive_int, default=20, help="smoothing exponents searched. Defaults to 20.")
    sw.add_argument("--clips", default="1.0",
                    help="layer clip ratios tried by the task-aware search before the per-group clip search "
                         "(e.g. 1.0,0.9). Defaults to 1.0.")
    sw.add_argument("--top-m", type=nonneg_int, default=1,
                    help="candidates per group re-scored on the heads, besides RTN (0 = reconstruction only). "
                         "Defaults to 1.")
    sw.add_argument("--no-rtn-finalist", action="store_true",
                    help="RTN only normalises the task term and cannot be picked (the heads choose among the "
                         "--top-m best by reconstruction)")
    sw.add_argument("--task-scenes", type=positive_int, default=1,
                    help="calibration scenes the heads are run on in the task-aware search. Defaults to 1.")
    sw.add_argument("--task-dense-frames", type=nonneg_int, default=2,
                    help="frames of those scenes whose depth and point maps the task-aware search scores "
                         "(the camera is scored on all; 0 = all). Defaults to 2.")
    sw.add_argument("--w-rec", type=float, default=1.0, help="weight of the reconstruction term. Defaults to 1.")
    sw.add_argument("--w-task", type=float, default=1.0, help="weight of the task term. Defaults to 1.")
    sw.add_argument("--task-weights", default="camera=1,depth=1,points=1,consistency=0.5",
                    help="head weights of the task loss. Defaults to camera=1,depth=1,points=1,consistency=0.5.")
    sw.add_argument("--max-rows", type=positive_int, default=4096,
                    help="token rows sampled per per-token probe. Defaults to 4096.")


def options_from_args(args):
    from qvggt_deploy.quant.calibrate import CalibOptions
    from qvggt_deploy.quant.objective import TaskWeights
    from qvggt_deploy.quant.task_search import TaskSearchOptions

    try:
        clips = tuple(float(c) for c in args.clips.split(","))
        weights = TaskWeights(**{k: float(v) for k, v in (kv.split("=") for kv in args.task_weights.split(","))})
    except (ValueError, TypeError) as exc:
        raise QvggtError(f"bad --clips or --task-weights: {exc}") from None
    if any(not 0 < c <= 1 for c in clips) or args.grid < 1 or args.group < 1:
        raise QvggtError("--clips must be in (0, 1], --grid and --group positive")
    changes = dict(wbits=args.wbits, abits=args.abits, group=args.group, act_granularity=args.act_granularity,
                   act_calib=args.act_calib, comp_directions=args.comp_directions, max_rows=args.max_rows,
                   seed=args.seed, task_weights=weights,
                   search=TaskSearchOptions(args.grid, clips, args.top_m, args.w_rec, args.w_task, args.task_scenes,
                                            args.task_dense_frames, rtn_finalist=not args.no_rtn_finalist))
    for name in ("smooth", "clip_search", "token_filter", "task_search"):
        if getattr(args, f"no_{name}"):
            changes[name] = False
    return CalibOptions.for_method(args.method, **changes)


def add_budget_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("mixed precision (one precision per block)")
    budget = group.add_mutually_exclusive_group()
    budget.add_argument("--avg-bits", type=positive_float, default=None,
                        help="budget: average bits per Linear weight, scales included")
    budget.add_argument("--max-weight-mb", type=positive_float, default=None,
                        help="budget: deployed Linear weights in MB (10^6 bytes)")
    group.add_argument("--mp-options", default="fp16,w8a16,w4a16",
                       help="precisions a block may get. Defaults to fp16,w8a16,w4a16 (add w8a8,w4a8 to allow INT8 "
                            "activations).")
    group.add_argument("--sensitivity", default=None,
                       help="reuse the table of `qvggt sensitivity`: its --out folder or sensitivity.json there (same model, "
                            "group and precisions)")
