"""``qvggt bench``: latency, peak RSS and size of model variants side by side."""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from qvggt_deploy.cli.args import image_side, nonneg_int, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Bench(Command):
    """Benchmark variants on the CPU, each in a fresh process: warm-up, median/p90 latency over N runs,
    peak RSS (the whole process: runtime, model, inference), model bytes.

    --backend ort: one variant per --model ([NAME=]FILE.onnx). --backend torch: the float model of
    --preset plus one fake-quantized variant per --recipe ([NAME=]DIR). The first variant is the
    baseline of the ratios. Writes --json, and next to it a Markdown table and a PNG chart.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backend", choices=["ort", "torch"], required=True)
        parser.add_argument("--model", action="append", default=[], metavar="[NAME=]FILE",
                            help="ort: an exported .onnx file (repeatable)")
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
        parser.add_argument("--preset", default="tiny", help="torch: model preset. Defaults to tiny.")
        parser.add_argument("--checkpoint", default=None, help="torch: weights")
        parser.add_argument("--recipe", action="append", default=[], metavar="[NAME=]DIR",
                            help="torch: a recipe to benchmark fake-quantized (repeatable)")
        parser.add_argument("--frames", type=positive_int, default=2, help="frames per inference. Defaults to 2.")
        parser.add_argument("--height", type=image_side, default=None, help="torch: input height (default: preset size)")
        parser.add_argument("--width", type=image_side, default=None, help="torch: input width (default: preset size)")
        parser.add_argument("--warmup", type=nonneg_int, default=1, help="untimed runs first. Defaults to 1.")
        parser.add_argument("--runs", type=positive_int, default=5, help="timed runs. Defaults to 5.")
        parser.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: all cores)")
        parser.add_argument("--json", required=True, help="result file (.json); .md and .png are written next to it")
        parser.add_argument("--title", default=None, help="report title")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.bench.report import markdown_table, write_chart, write_markdown
        from qvggt_deploy.bench.run import Variant, measure, with_ratios
        from qvggt_deploy.cli.check import parse_named
        from qvggt_deploy.fileio import check_output_file, write_json

        for path in (Path(args.json), Path(args.json).with_suffix(".md"), Path(args.json).with_suffix(".png")):
            check_output_file(path, what="report file", option="--json")
        if args.runs < 1 or args.warmup < 0 or args.frames < 1:
            raise QvggtError("--runs and --frames must be at least 1, --warmup at least 0")
        variants = []
        if args.backend == "ort":
            if args.recipe:
                raise QvggtError("--recipe is for --backend torch; export the recipe and pass --model")
            from qvggt_deploy.export.validate import load_checked

            shapes = {}
            for name, path in parse_named(args.model, "--model"):
                if not path.is_file():
                    raise QvggtError(f"--model {name}: file not found: {path}")
                _, meta = load_checked(path, require_metadata=("preset", "height", "width"))
                shapes[name] = (meta.get("preset"), meta.get("height"), meta.get("width"))
                variants.append(Variant(name, "ort", model=str(path), accuracy_level=args.accuracy_level,
                                        mem_arena=not args.no_arena, arena_extend=args.arena_extend))
            if len(set(shapes.values())) > 1:  # ratios between different workloads mean nothing
                raise QvggtError("the --model files were exported for different presets or sizes: "
                                 + ", ".join(f"{n} {p} {h}x{w}" for n, (p, h, w) in shapes.items()))
        else:
            if args.model:
                raise QvggtError("--model is for --backend ort")
            if args.interleave:
                raise QvggtError("--interleave is for --backend ort (torch variants are timed each in its own process)")
            from qvggt_deploy.model.presets import get_preset

            size = get_preset(args.preset).img_size
            h, w = args.height or size, args.width or size
            variants.append(Variant("torch-fp32", "torch", preset=args.preset, checkpoint=args.checkpoint, height=h, width=w))
            for name, path in parse_named(args.recipe, "--recipe"):
                variants.append(Variant(f"torch-{name}", "torch", preset=args.preset, checkpoint=args.checkpoint,
                                        recipe=str(path), height=h, width=w))
        if not variants:
            raise QvggtError("nothing to benchmark: pass --model (ort) or use --backend torch")
        if args.interleave and args.backend == "ort":
            from qvggt_deploy.bench.run import measure_interleaved

            results = [measure(v, args.frames, 0, 1, args.threads) for v in variants]  # RSS, load, size
            timing = measure_interleaved(variants, args.frames, args.warmup, args.runs, args.threads)
            for r in results:
                r["rss_run_latency"] = r["median"]
                r.update(timing[r["label"]])
                r["timing"] = "interleaved"
        else:
            results = [measure(v, args.frames, args.warmup, args.runs, args.threads) for v in variants]
        results = with_ratios(results)
        out = Path(args.json)
        r0 = results[0]
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
        title = args.title or f"qvggt bench ({args.backend}, {args.frames} frames at {r0['height']}x{r0['width']})"
        notes = [f"machine: {machine}; threads: {args.threads or 'all'}; warm-up {args.warmup}, {args.runs} timed runs"
                 + ("; ORT memory arena off" if args.backend == "ort" and args.no_arena else "")
                 + (f"; ORT arena extend: {args.arena_extend}" if args.backend == "ort" else ""),
                 "peak RSS = ru_maxrss of a fresh process per variant (runtime + model + runs)"
                 + ("; latencies timed round-robin in one process (each variant under the same machine load)"
                    if args.interleave else "; each variant timed in its own process"),
                 f"ratios against `{r0['label']}`"]
        write_json(out, {"title": title, "machine": machine, "settings": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                         "results": results})
        chart = write_chart(results, out.with_suffix(".png"), title)
        write_markdown(results, out.with_suffix(".md"), title, notes, chart)
        print(markdown_table(results))
        logger.info("wrote %s, %s, %s", out, out.with_suffix(".md"), chart)
        return 0
