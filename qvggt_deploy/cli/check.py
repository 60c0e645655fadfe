"""``qvggt check``: accuracy of exported graphs (and engines) against PyTorch, on generated scenes
or the user's photos. What runs and what is gated is :mod:`qvggt_deploy.check.plan`."""
from __future__ import annotations

import argparse
from pathlib import Path

from qvggt_deploy.cli.args import (OptionValueError, add_force_arg, add_model_args, add_out_arg, add_threads_arg,
                                   apply_threads, model_source, positive_int)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


def parse_gate(text: str):
    """``METRIC=BOUND`` -> (metric, bound)."""
    from qvggt_deploy.check.compare import GATES

    metric, sep, bound = text.partition("=")
    if not sep or metric not in GATES:
        raise OptionValueError(f"{text!r}: expected METRIC=BOUND with METRIC one of {', '.join(GATES)}")
    try:
        return metric, float(bound)
    except ValueError:
        raise OptionValueError(f"{text!r}: {bound!r} is not a number") from None


class Check(Command):
    """Compare backends: PyTorch (float and fake-quantized) vs ONNX Runtime files (and TensorRT engines).

    Every --onnx file is paired with the PyTorch model it must equal, from its metadata (recipe
    digest, conv precision): ORT files in exact mode are gated to float tolerance; everything
    else (int8 activations, TensorRT fp16) is reported, and gated by --gate bounds if given.
    Engines are compared with the float model, and with --trt-reference NAME also with the ONNX
    Runtime run of the --onnx file NAME. Inputs: held-out generated scenes (task metrics also
    against their ground truth), or with --images your photos (no ground truth: cameras, depth and points of each runner against its
    reference runner, plus depth and error maps). Writes the folder --out (check.json, check.md,
    figures/); exit 0 when every gate passed, 1 otherwise (as `polygraphy run`).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        parser.add_argument("--recipe", action="append", default=[],
                            help="a recipe the quantized files were exported with (repeatable; matched by digest)")
        parser.add_argument("--onnx", action="append", default=[], metavar="[NAME=]PATH",
                            help="an exported file to check (repeatable)")
        parser.add_argument("--trt", action="append", default=[], metavar="[NAME=]ENGINE",
                            help="a TensorRT engine to check (repeatable; needs tensorrt and a GPU)")
        parser.add_argument("--trt-reference", default=None, metavar="NAME",
                            help="also compare every --trt engine with the ONNX Runtime run of the --onnx file NAME "
                                 "(the graph the engines were built from; for a plugin engine, the native-INT4 graph "
                                 "of the same recipe)")
        parser.add_argument("--images", default=None,
                            help="a folder of photos, run as one sequence at the files' input size instead of "
                                 "generated scenes (no ground truth needed)")
        parser.add_argument("--max-frames", type=positive_int, default=None,
                            help="with --images: only the first N photos (sorted by name)")
        parser.add_argument("--mode", default="crop", choices=["crop", "pad"],
                            help="with --images: preprocessing as qvggt infer. Defaults to crop.")
        parser.add_argument("--gate", action="append", default=[], type=parse_gate, metavar="METRIC=BOUND",
                            help="gate every non-exact pair on a metric against its reference runner "
                                 "(rre_deg, rte_deg, abs_rel, chamfer: at most BOUND; delta_1.25: at least BOUND "
                                 "percent); repeatable")
        parser.add_argument("--scenes", type=positive_int, default=2, help="generated held-out scenes. Defaults to 2.")
        parser.add_argument("--frames", type=positive_int, default=2, help="frames per scene. Defaults to 2.")
        parser.add_argument("--seed", type=int, default=0, help="scene seed offset. Defaults to 0.")
        add_threads_arg(parser, "torch and ONNX Runtime")
        add_out_arg(parser, "folder", "the report (check.json, check.md, figures/)")
        add_force_arg(parser, "a check report folder")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.check.plan import parse_named
        from qvggt_deploy.check.run import REPORT_MARK, CheckOptions, check_exports, write_check
        from qvggt_deploy.fileio import atomic_dir, check_output_dir

        check_output_dir(args.out, ours=REPORT_MARK, what="check report folder (no check.json)", force=args.force)
        apply_threads(args.threads)
        opts = CheckOptions(onnx=parse_named(args.onnx, "--onnx"), trt=parse_named(args.trt, "--trt"),
                            model=model_source(args), recipes=tuple(args.recipe), images=args.images,
                            max_frames=args.max_frames, mode=args.mode, gates=tuple(args.gate), scenes=args.scenes,
                            frames=args.frames, seed=args.seed, threads=args.threads,
                            engine_reference=args.trt_reference)
        run = check_exports(opts)
        with atomic_dir(args.out, ours=REPORT_MARK, force=args.force) as tmp:
            write_check(run, tmp)
        out = Path(args.out)
        print((out / "check.md").read_text(encoding="utf-8"))
        logger.info("report: %s, %s", out / "check.json", out / "check.md")
        return 0 if run.result else 1
