"""``qvggt bench``: latency, peak RSS and size of model variants side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

from qvggt_deploy.cli.args import (add_deprecated_arg, add_force_arg, add_model_args, add_out_arg, add_threads_arg,
                                   image_side, model_source, nonneg_int, positive_int, warn_deprecated)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Bench(Command):
    """Benchmark variants, each in a fresh process: warm-up, median/p90 latency over N runs, peak RSS
    (the whole process: runtime, model, inference), model bytes.

    --backend ort: one variant per --model ([NAME=]FILE.onnx). --backend torch: the float model of
    --preset plus one fake-quantized variant per --recipe ([NAME=]DIR). --backend trt: one variant
    per --engine ([NAME=]FILE.engine) on its GPU: latency from CUDA events around the engine's
    enqueue (optionally a CUDA-graph replay), end-to-end latency with the copies, the slowest
    layers from TensorRT's IProfiler (W4A16 plugin layers marked), activation and device memory,
    and on a Jetson tegrastats RAM and power samples. The first variant is the baseline of the
    ratios. Writes the folder --out: bench.json, a Markdown table (bench.md) and a PNG chart.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backend", choices=["ort", "torch", "trt"], required=True)
        parser.add_argument("--model", action="append", default=[], metavar="[NAME=]FILE",
                            help="ort: an exported .onnx file (repeatable)")
        parser.add_argument("--engine", action="append", default=[], metavar="[NAME=]FILE",
                            help="trt: a TensorRT engine from qvggt build-engine (repeatable; a split build's "
                                 ".engine path works)")
        parser.add_argument("--cuda-graph", action="store_true",
                            help="trt: capture the enqueue in a CUDA graph once and time its replays")
        parser.add_argument("--layers", type=nonneg_int, default=20,
                            help="trt: report the N slowest layers (TensorRT IProfiler, extra runs); 0 skips. "
                                 "Defaults to 20.")
        parser.add_argument("--tegrastats", default="auto", choices=["auto", "on", "off"],
                            help="trt: sample RAM and power with tegrastats during the timed runs (auto: on a "
                                 "Jetson). Defaults to auto.")
        parser.add_argument("--plugin", default=None, help="trt: the plugin library (default: the engine sidecar's)")
        parser.add_argument("--accuracy-level", type=int, default=0, choices=[0, 1, 2, 3, 4],
                            help="ort: session.qdq_matmulnbits_accuracy_level for QDQ files. Defaults to 0.")
        parser.add_argument("--no-arena", action="store_true",
                            help="ort: disable ONNX Runtime's CPU memory arena (same results; on VGGT-1B the peak RSS "
                                 "is higher without it, see backends/onnxrt/loader.py)")
        parser.add_argument("--arena-extend", default="power_of_two", choices=["power_of_two", "requested"],
                            help="ort: how the CPU arena grows (requested: less over-allocation). "
                                 "Defaults to power_of_two (ORT's default).")
        parser.add_argument("--interleave", action="store_true",
                            help="ort: time the variants round-robin in one process (fair ratios on a busy machine); "
                                 "peak RSS still comes from one fresh process per variant (1 run each)")
        add_model_args(parser, when="torch: ")
        parser.add_argument("--recipe", action="append", default=[], metavar="[NAME=]DIR",
                            help="torch: a recipe to benchmark fake-quantized (repeatable)")
        parser.add_argument("--frames", type=positive_int, default=2, help="frames per inference. Defaults to 2.")
        parser.add_argument("--height", type=image_side, default=None, help="torch: input height (default: preset size)")
        parser.add_argument("--width", type=image_side, default=None, help="torch: input width (default: preset size)")
        parser.add_argument("--warmup", type=nonneg_int, default=1, help="untimed runs first. Defaults to 1.")
        parser.add_argument("--runs", type=positive_int, default=5, help="timed runs. Defaults to 5.")
        add_threads_arg(parser, "intra-op, of each variant's runtime")
        target = parser.add_mutually_exclusive_group(required=True)
        add_out_arg(target, "folder", "the report (bench.json, bench.md, bench.png)", required=False)
        add_deprecated_arg(target, "--json", "--out DIR", default=None, metavar="FILE")
        add_force_arg(parser, "a bench report folder")
        parser.add_argument("--title", default=None, help="report title")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.bench.report import markdown_table
        from qvggt_deploy.bench.suite import REPORT_MARK, BenchOptions, report_paths, run_bench, write_bench
        from qvggt_deploy.check.plan import parse_named
        from qvggt_deploy.fileio import atomic_dir, check_output_dir, check_output_file

        if args.out:
            check_output_dir(args.out, ours=REPORT_MARK, what="bench report folder (no bench.json)", force=args.force)
        else:
            warn_deprecated("--json", "--out DIR")
            legacy = Path(args.json)
            for path in (legacy, legacy.with_suffix(".md"), legacy.with_suffix(".png")):
                check_output_file(path, what="report file", option="--json")
        opts = BenchOptions(backend=args.backend, models=parse_named(args.model, "--model"),
                            engines=parse_named(args.engine, "--engine"), recipes=parse_named(args.recipe, "--recipe"),
                            model=model_source(args), height=args.height, width=args.width, frames=args.frames,
                            warmup=args.warmup, runs=args.runs, threads=args.threads,
                            accuracy_level=args.accuracy_level, mem_arena=not args.no_arena,
                            arena_extend=args.arena_extend, interleave=args.interleave, cuda_graph=args.cuda_graph,
                            layers=args.layers, tegrastats=args.tegrastats, plugin=args.plugin, title=args.title)
        report = run_bench(opts)
        if args.out:
            with atomic_dir(args.out, ours=REPORT_MARK, force=args.force) as tmp:
                write_bench(report, *report_paths(tmp))
            paths = report_paths(args.out)
        else:
            paths = (legacy, legacy.with_suffix(".md"), legacy.with_suffix(".png"))
            write_bench(report, *paths)
        print(markdown_table(report.results))
        logger.info("wrote %s", ", ".join(map(str, paths)))
        return 0
