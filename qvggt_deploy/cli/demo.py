"""``qvggt demo``: the whole pipeline on the embedded tiny model, into one report folder
(:mod:`qvggt_deploy.demo.run`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from qvggt_deploy.cli.args import add_out_arg, add_preset_arg, add_threads_arg, positive_float, positive_int
from qvggt_deploy.cli.base import Command


class Demo(Command):
    """Run everything on the embedded tiny model and write a report folder (Markdown + PNG).

    Stages: sensitivity on generated calibration scenes, calibration (QVGGT W4A16 and a
    mixed-precision plan under a bit budget), export (FP32, W4A16 exact and W8A8 dynamic-activation ORT
    graphs, mixed, the TensorRT QDQ graph with the W4A16 plugin), lint, check (accuracy and task
    metrics), bench (latency, peak RSS, size) and figures (depth maps, point clouds). A stage whose
    component is missing or fails is reported with the reason and the stages needing it are
    skipped: nothing is made up. Without the embedded checkpoint the report says the weights
    are random.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from qvggt_deploy.demo.run import DemoOptions
        from qvggt_deploy.quant.calibrate import METHODS

        add_out_arg(parser, "workdir", "the report (README.md, demo.json, figures, recipes, ONNX files)",
                    extra="an existing folder only if it is empty or an earlier demo's (it holds demo.json)")
        add_preset_arg(parser)
        parser.add_argument("--method", default=DemoOptions.method, choices=METHODS,
                            help=f"calibration method (see qvggt calibrate --help). Defaults to {DemoOptions.method}.")
        parser.add_argument("--calib-scenes", type=positive_int, default=4, help="generated calibration scenes. Defaults to 4.")
        parser.add_argument("--frames", type=positive_int, default=4, help="frames per scene. Defaults to 4.")
        parser.add_argument("--group", type=positive_int, default=32, help="INT4 group size. Defaults to 32.")
        parser.add_argument("--avg-bits", type=positive_float, default=5.0,
                            help="bit budget of the mixed-precision plan. Defaults to 5.")
        parser.add_argument("--check-scenes", type=positive_int, default=DemoOptions.check_scenes,
                            help=f"held-out scenes for check. Defaults to {DemoOptions.check_scenes}.")
        parser.add_argument("--bench-runs", type=positive_int, default=3, help="timed runs per variant. Defaults to 3.")
        add_threads_arg(parser, "torch and ONNX Runtime")
        parser.add_argument("--quick", action="store_true", help="minimal settings (tests): 1 scene, 2 frames, RTN")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.demo.run import DemoOptions, run_demo

        given = dict(preset=args.preset, method=args.method, calib_scenes=args.calib_scenes, frames=args.frames,
                     group=args.group, avg_bits=args.avg_bits, check_scenes=args.check_scenes,
                     bench_runs=args.bench_runs, threads=args.threads)
        opts = DemoOptions.quick(**given) if args.quick else DemoOptions(**given)
        p, total = run_demo(opts, args.out)
        failed = [s.name for s in p.stages.values() if s.status != "ok"]
        print(f"demo report: {Path(args.out) / 'README.md'} ({total:.0f} s)" + (f"; not ok: {', '.join(failed)}" if failed else ""))
        return 0 if not failed else 1
