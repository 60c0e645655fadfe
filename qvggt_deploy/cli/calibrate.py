"""``qvggt calibrate``: post-training quantization of VGGT into a recipe folder."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import (add_force_arg, add_model_args, add_out_arg, add_threads_arg, apply_threads,
                                   model_source, resolve_device)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import (add_budget_args, add_calib_data_args, add_method_args, calib_data,
                                         load_calib_scenes, options_from_args)
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Calibrate(Command):
    """Calibrate a quantization recipe (RTN, AWQ or QVGGT) on calibration scenes.

    Blocks are calibrated one at a time, each on the inputs the already-quantized blocks before
    it produce. Finished blocks are saved in OUT.work/ as they complete; rerunning the same
    command (same options, model and data) resumes there. With --avg-bits or --max-weight-mb,
    per-block sensitivities are measured first and each block gets one of --mp-options so that
    the summed sensitivity is minimal within the budget. The recipe (OUT/recipe.json +
    weights.safetensors) is written atomically; evaluate it with `qvggt eval --recipe OUT`. The
    seconds of each phase (sensitivity, FP32 targets, capture, compensation, scale search, clip
    search, finalist scoring, quantize, stream) are logged at the end and kept in recipe.json
    ("run": calibration_seconds, phase_seconds).

    With --stats FILE, only the float model's per-Linear activation statistics over the
    calibration scenes are collected (token counts, mean and max |x| per channel, compensation
    rows) and written to FILE (safetensors); launched by torchrun, the scenes are shared between
    the processes and their statistics merged (rank 0 writes).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        add_calib_data_args(parser)
        add_method_args(parser)
        add_budget_args(parser)
        target = parser.add_mutually_exclusive_group(required=True)
        add_out_arg(target, "folder", "the recipe (recipe.json, weights.safetensors)", required=False,
                    extra="finished units are kept in OUT.work/ beside it until the recipe is written; this or --stats")
        target.add_argument("--stats", default=None, metavar="FILE",
                            help="write the float model's activation statistics to FILE (.safetensors) instead of "
                                 "calibrating (special tokens left out as --method says; an earlier statistics file "
                                 "is replaced); shared between processes under torchrun")
        add_force_arg(parser, "a recipe folder")
        parser.add_argument("--keep-work", action="store_true", help="keep OUT.work/ after success")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        if args.stats:
            return write_statistics(args)
        from qvggt_deploy.backends.limits import check_calibration_fits
        from qvggt_deploy.datasets.distributed import launched_by_torchrun
        from qvggt_deploy.quant.run import calibrate_to, check_recipe_output

        if launched_by_torchrun():
            raise QvggtError("calibrate --out runs in one process (each unit is searched on every scene); under "
                             "torchrun only --stats is shared between processes")
        check_recipe_output(args.out, args.force)
        apply_threads(args.threads)
        calibrate_to(calibrate_options(args), args.out, check_calibration_fits)
        return 0


def calibrate_options(args):
    """The command line as :class:`~qvggt_deploy.quant.run.CalibrateOptions`."""
    from qvggt_deploy.quant.run import CalibrateOptions, parse_precisions

    return CalibrateOptions(model=model_source(args), data=calib_data(args), calib=options_from_args(args),
                            avg_bits=args.avg_bits, max_weight_mb=args.max_weight_mb,
                            mp_options=parse_precisions(args.mp_options, "--mp-options"),
                            sensitivity=args.sensitivity, device=resolve_device(args.device),
                            keep_work=args.keep_work, force=args.force)


def write_statistics(args) -> int:
    """``--stats``: the statistics pass, its scenes sharded over torchrun's processes."""
    from qvggt_deploy.datasets.distributed import init_shard, local_device
    from qvggt_deploy.fileio import check_output_file
    from qvggt_deploy.model.checkpoint import load_model
    from qvggt_deploy.quant.stats import collect_statistics, is_stats_file, save_statistics

    check_output_file(args.stats, ours=is_stats_file, what="statistics file", option="--stats", force=args.force)
    apply_threads(args.threads)
    device = local_device(resolve_device(args.device))
    opts = options_from_args(args)
    shard = init_shard(device.type)
    try:
        model = load_model(args.preset, args.checkpoint, device=device, allow_random=args.allow_random_weights)
        scenes, data_digest = load_calib_scenes(args, model, "cpu")  # each rank moves its own share
        stats = collect_statistics(model, scenes, opts.token_filter, opts.comp_directions, shard.rank,
                                   shard.world_size)
        if shard.rank == 0:
            save_statistics(stats, args.stats, {"preset": args.preset, "scenes": str(len(scenes)),
                                                "token_filter": str(opts.token_filter),
                                                "comp_directions": str(opts.comp_directions),
                                                "data_sha256": data_digest, "processes": str(shard.world_size)},
                            force=args.force)
            logger.info("activation statistics of %d Linears over %d scene(s), %d process(es) -> %s", len(stats),
                        len(scenes), shard.world_size, args.stats)
        shard.barrier()
    finally:
        shard.close()
    return 0
