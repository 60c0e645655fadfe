"""``qvggt ablate``: the QVGGT component ablation as Markdown + JSON tables."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import (add_force_arg, add_model_args, add_out_arg, add_threads_arg, apply_threads,
                                   model_source, positive_int)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import add_calib_data_args, add_method_args, calib_data, options_from_args
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.ablation_run import JSON, MD, PNG


class Ablate(Command):
    """Calibrate and evaluate, in each setting (W4 g128, W3 g128, W4A8 with static activation
    scales): RTN, AWQ, AWQ + mixed precision, + token filtering, + compensation rows, + task-aware
    search (= QVGGT), and QVGGT at the setting's bits; one FP32 row serves all settings.

    Every row starts from the same float model and calibration scenes and is scored on the same
    held-out generated scenes (seeds 10^9 + SEED + i) with camera AUC@30, depth AbsRel and
    delta<1.25, Chamfer (points, after Umeyama) and cross-head consistency; weight-only rows also
    with fp16 activations (the W4A16 kernel's arithmetic). Differences are paired per scene, with
    standard errors, against FP32 and against the AWQ row of equal average bits; each step's
    marginal effect has a mean +- 2 SE interval. Writes the folder OUT
    (ablation.md, ablation.json, ablation.png; without matplotlib no chart); row results are cached
    in OUT.work/ beside it (rerun to resume).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        add_calib_data_args(parser)
        add_method_args(parser)
        ev = parser.add_argument_group("evaluation")
        ev.add_argument("--eval-scenes", type=positive_int, default=64, help="held-out generated scenes. Defaults to 64.")
        ev.add_argument("--eval-frames", type=positive_int, default=4, help="frames per evaluation scene. Defaults to 4.")
        ev.add_argument("--eval-seed", type=int, default=0, help="evaluation seed offset. Defaults to 0.")
        ev.add_argument("--max-points", type=positive_int, default=5000, help="points per cloud for Chamfer. Defaults to 5000.")
        parser.add_argument("--settings", default="all",
                            help="comma-separated settings: w4 (W4A16), w3 (W3A16), w4a8, or all; the group is "
                                 "--group. Defaults to all.")
        parser.add_argument("--rows", default="all",
                            help="comma-separated rows (fp32, rtn, awq, awq+mp, awq+mp+filter, awq+mp+comp, qvggt, "
                                 "qvggt-nomp) or SETTING/ROW names (e.g. w4g128/awq), or all. Defaults to all.")
        add_out_arg(parser, "folder", f"the tables and chart ({JSON}, {MD}, {PNG})",
                    extra="row results are cached in OUT.work/ beside it (rerun to resume)")
        add_force_arg(parser, "an ablation folder")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.backends.limits import check_calibration_fits
        from qvggt_deploy.quant.ablation_run import ablate_to, check_ablation_output
        from qvggt_deploy.quant.calibrate import DEFAULT_METHOD

        switches = ("no_smooth", "no_clip_search", "no_token_filter", "no_task_search")
        fixed = [f"--{k.replace('_', '-')}" for k in switches if getattr(args, k)]
        fixed += ["--method"] if args.method != DEFAULT_METHOD else []
        fixed += ["--abits"] if args.abits else []
        fixed += ["--wbits"] if args.wbits != 4 else []
        if fixed:
            raise QvggtError(f"qvggt ablate sets {', '.join(fixed)} itself, row by row (the settings fix the bits; "
                             f"the rows the method switches); leave them out")
        check_ablation_output(args.out, args.force)
        apply_threads(args.threads)
        ablate_to(ablate_options(args), args.out, args.force, check_calibration_fits)
        return 0


def ablate_options(args):
    """The command line as :class:`~qvggt_deploy.quant.ablation_run.AblateOptions`."""
    from qvggt_deploy.quant.ablation_run import AblateOptions

    def names(text: str) -> tuple:
        return tuple(w.strip() for w in text.split(",") if w.strip())

    return AblateOptions(model=model_source(args), data=calib_data(args), base=options_from_args(args),
                         settings=names(args.settings), rows=names(args.rows), eval_scenes=args.eval_scenes,
                         eval_frames=args.eval_frames, eval_seed=args.eval_seed, max_points=args.max_points)
