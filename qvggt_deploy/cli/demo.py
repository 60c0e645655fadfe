"""``qvggt demo``: the whole pipeline on the embedded tiny model, into one report folder."""
from __future__ import annotations

import argparse
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List

from qvggt_deploy.cli.args import add_out_arg, add_preset_arg, add_threads_arg, positive_float, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


@dataclass
class Stage:
    name: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""
    artifacts: Dict[str, str] = field(default_factory=dict)


def run_cli(argv: List[str]) -> None:
    """Run one ``qvggt`` subcommand in this process; QvggtError if it is unavailable or fails."""
    from qvggt_deploy.cli.main import build_parser, load_command

    command = load_command(argv[0])
    args = build_parser({argv[0]: command}).parse_args(argv)
    code = args._command.run(args)
    if code:
        raise QvggtError(f"qvggt {argv[0]} exited with status {code}")


def export_file(preset: str, path: Path, recipe_dir, size: int, threads=None, **options):
    """One export of the demo through the library (``export_onnx``); the file is replaced whole."""
    from qvggt_deploy.cli.args import apply_threads
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.export.options import ExportOptions
    from qvggt_deploy.model.checkpoint import load_model

    apply_threads(threads)
    recipe = None
    if recipe_dir is not None:
        from qvggt_deploy.quant.recipe import load_recipe

        recipe = load_recipe(recipe_dir)
    opts = ExportOptions(height=size, width=size, free_weights=True, **options)  # the model is loaded for it
    return export_onnx(load_model(preset), path, opts, recipe=recipe)


# Precisions of the demo's mixed plan; sensitivity must measure exactly these (calibrate checks).
MIXED_OPTIONS = "fp16,w4a16"


def _fresh(path: Path) -> None:
    """Remove a stage's outputs from an earlier run into the same folder before the stage runs, so
    the report never shows a result this run did not produce."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class Pipeline:
    """Stages with dependencies: a stage runs only when the stages it needs succeeded."""

    def __init__(self):
        self.stages: Dict[str, Stage] = {}

    def ok(self, name: str) -> bool:
        return name in self.stages and self.stages[name].status == "ok"

    def run(self, name: str, fn: Callable[[Stage], None], needs=()) -> Stage:
        stage = self.stages.setdefault(name, Stage(name))
        missing = [n for n in needs if not self.ok(n)]
        if missing:
            stage.status, stage.detail = "skipped", f"needs {', '.join(missing)}"
            logger.warning("demo: %s skipped (%s)", name, stage.detail)
            return stage
        logger.info("demo: %s ...", name)
        start = time.perf_counter()
        try:
            fn(stage)
            stage.status = "ok"
        except QvggtError as exc:
            stage.status, stage.detail = "failed", str(exc)
        except Exception as exc:  # a bug in a component: report it, keep the other stages going
            stage.status, stage.detail = "failed", f"{type(exc).__name__}: {exc}"
            logger.debug("%s", traceback.format_exc())
        stage.seconds = time.perf_counter() - start
        log = logger.info if stage.status == "ok" else logger.error
        log("demo: %s %s (%.1f s)%s", name, stage.status.upper(), stage.seconds, f": {stage.detail}" if stage.detail else "")
        return stage


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
        add_out_arg(parser, "folder", "the report (README.md, figures, recipes, ONNX files)")
        add_preset_arg(parser)
        parser.add_argument("--method", default="qvggt", choices=["qvggt", "awq", "rtn"],
                            help="calibration method. Defaults to qvggt.")
        parser.add_argument("--calib-scenes", type=positive_int, default=4, help="generated calibration scenes. Defaults to 4.")
        parser.add_argument("--frames", type=positive_int, default=4, help="frames per scene. Defaults to 4.")
        parser.add_argument("--group", type=positive_int, default=32, help="INT4 group size. Defaults to 32.")
        parser.add_argument("--avg-bits", type=positive_float, default=5.0,
                            help="bit budget of the mixed-precision plan. Defaults to 5.")
        parser.add_argument("--check-scenes", type=positive_int, default=2, help="held-out scenes for check. Defaults to 2.")
        parser.add_argument("--bench-runs", type=positive_int, default=3, help="timed runs per variant. Defaults to 3.")
        add_threads_arg(parser, "torch and ONNX Runtime")
        parser.add_argument("--quick", action="store_true", help="minimal settings (tests): 1 scene, 2 frames, RTN")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.model.checkpoint import default_checkpoint
        from qvggt_deploy.model.presets import get_preset

        if args.quick:
            args.calib_scenes, args.frames, args.check_scenes, args.bench_runs, args.method = 1, 2, 1, 1, "rtn"
        from qvggt_deploy.fileio import check_output_dir

        out = check_output_dir(args.out, replace=False)
        out.mkdir(parents=True, exist_ok=True)
        size = get_preset(args.preset).img_size
        p = Pipeline()
        threads = ["--threads", str(args.threads)] if args.threads else []
        data = ["--synthetic", str(args.calib_scenes), "--frames", str(args.frames)]
        recipes = {"w4a16": out / "recipes" / "w4a16", "mixed": out / "recipes" / "mixed"}
        onnx_dir = out / "onnx"
        start = time.perf_counter()

        def model(stage: Stage) -> None:
            ckpt = default_checkpoint(args.preset)
            stage.detail = (f"embedded checkpoint {ckpt.name}" if ckpt else
                            "no embedded checkpoint for this preset: RANDOM weights (every number in this report "
                            "describes an untrained network)")
            stage.artifacts["random_weights"] = "no" if ckpt else "yes"

        def sensitivity(stage: Stage) -> None:
            run_cli(["sensitivity", "--preset", args.preset, *data, "--group", str(args.group),
                     "--precisions", MIXED_OPTIONS,
                     "--json", str(out / "sensitivity.json"), "--png", str(out / "sensitivity.png"), *threads])
            stage.artifacts = {"json": "sensitivity.json", "png": "sensitivity.png"}

        def calibrate(name: str, extra: List[str]) -> Callable[[Stage], None]:
            def fn(stage: Stage) -> None:
                run_cli(["calibrate", "--preset", args.preset, "--method", args.method, *data, "--group",
                         str(args.group), *extra, "--out", str(recipes[name]), *threads])
                stage.detail = f"method {args.method}, group {args.group}" + (f", {' '.join(extra)}" if extra else "")
                stage.artifacts["recipe"] = str(recipes[name].relative_to(out))
            return fn

        def export(name: str, recipe, **options) -> Callable[[Stage], None]:
            def fn(stage: Stage) -> None:
                path = onnx_dir / f"{name}.onnx"
                export_file(args.preset, path, recipe, size, threads=args.threads, **options)
                stage.artifacts["onnx"] = str(path.relative_to(out))
            return fn

        p.run("model", model)
        p.run("sensitivity", sensitivity, needs=["model"])
        p.run("calibrate-w4a16", calibrate("w4a16", []), needs=["model"])
        p.run("calibrate-mixed", calibrate("mixed", ["--avg-bits", str(args.avg_bits), "--mp-options", MIXED_OPTIONS,
                                                     "--sensitivity", str(out / "sensitivity.json")]),
              needs=["sensitivity"])
        exports = {  # name: (recipe, options, stages it needs)
            "fp32": (None, {}, []),
            "w4a16": (recipes["w4a16"], {}, ["calibrate-w4a16"]),
            "w8a8-dyn": (recipes["w4a16"], {"ort_int8_activations": True}, ["calibrate-w4a16"]),
            "mixed": (recipes["mixed"], {}, ["calibrate-mixed"]),
            "w4a16-trt": (recipes["w4a16"], {"target": "trt", "trt_plugin": True}, ["calibrate-w4a16"]),
        }
        for name, (recipe, options, needs) in exports.items():
            p.run(f"export-{name}", export(name, recipe, **options), needs=["model", *needs])
        files = {n: onnx_dir / f"{n}.onnx" for n in exports if p.ok(f"export-{n}")}

        def lint(stage: Stage) -> None:
            from qvggt_deploy.export.lint import lint_file
            from qvggt_deploy.fileio import write_json

            _fresh(out / "lint.json")
            results = [lint_file(path) for path in files.values()]
            write_json(out / "lint.json", {"files": [r.to_dict() for r in results]})
            stage.artifacts["json"] = "lint.json"
            failed = [Path(r.path).name for r in results if not r]
            if failed:
                raise QvggtError(f"lint found errors in {', '.join(failed)} (see lint.json)")

        def check(stage: Stage) -> None:
            _fresh(out / "check")
            ort_files = [f"{n}={f}" for n, f in files.items() if n != "w4a16-trt"]
            argv = ["check", "--preset", args.preset, "--scenes", str(args.check_scenes), "--frames", str(args.frames),
                    "--out", str(out / "check"), *threads]
            for n in ("w4a16", "mixed"):
                if p.ok(f"calibrate-{n}"):
                    argv += ["--recipe", str(recipes[n])]
            for f in ort_files:
                argv += ["--onnx", f]
            try:
                run_cli(argv)
            finally:
                stage.artifacts = {"md": "check/check.md", "json": "check/check.json"}

        def bench(stage: Stage) -> None:
            _fresh(out / "bench")
            argv = ["bench", "--backend", "ort", "--frames", str(args.frames), "--runs", str(args.bench_runs),
                    "--json", str(out / "bench" / "bench.json"), *threads]
            for n, f in files.items():
                if n != "w4a16-trt":
                    argv += ["--model", f"{n}={f}"]
            run_cli(argv)
            stage.artifacts = {"md": "bench/bench.md", "png": "bench/bench.png", "json": "bench/bench.json"}

        def figures(stage: Stage) -> None:
            self._figures(out, files, args, stage)

        p.run("lint", lint, needs=["export-fp32"])
        p.run("check", check, needs=["export-fp32"])
        p.run("bench", bench, needs=["export-fp32"])
        p.run("figures", figures, needs=["export-fp32"])
        total = time.perf_counter() - start
        self._report(out, p, args, size, total)
        failed = [s.name for s in p.stages.values() if s.status != "ok"]
        print(f"demo report: {out / 'README.md'} ({total:.0f} s)" + (f"; not ok: {', '.join(failed)}" if failed else ""))
        return 0 if not failed else 1

    @staticmethod
    def _figures(out: Path, files: Dict[str, Path], args, stage: Stage) -> None:
        from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx
        from qvggt_deploy.graph.io import OUTPUT_NAMES
        from qvggt_deploy.demo.figures import depth_figure, point_cloud_figure
        from qvggt_deploy.graph.metadata import ExportMetadata
        from qvggt_deploy.metrics.evaluate import eval_scenes

        h, w = ExportMetadata.read(files["fp32"]).size_hw
        scene = next(iter(eval_scenes(1, frames=args.frames, seed=1000, image_size=(h, w))))
        images = scene.images.numpy()
        preds = {}
        for name in ("fp32", "w4a16", "mixed"):
            if name in files:
                sess = SessionFromOnnx(files[name], threads=args.threads)()
                preds[f"ORT {name}"] = dict(zip(OUTPUT_NAMES, sess.run(None, {"images": images})))
        depth_figure(images, scene.depth.numpy(), preds, out / "depth.png")
        point_cloud_figure(images, preds, out / "points.png")
        stage.artifacts = {"depth": "depth.png", "points": "points.png"}

    @staticmethod
    def _report(out: Path, p: Pipeline, args, size: int, total: float) -> None:
        from qvggt_deploy.fileio import write_json, write_text

        random = p.stages["model"].artifacts.get("random_weights") == "yes" if "model" in p.stages else True
        lines = ["# qvggt demo", ""]
        if random:
            lines += ["> **Random weights.** The embedded tiny checkpoint is not in this build, so the model is "
                      "untrained: accuracy and metrics below describe quantizing a random network, not VGGT.", ""]
        lines += [f"Preset `{args.preset}` at {size}x{size}, {args.frames} frames per scene; calibration: "
                  f"{args.method}, {args.calib_scenes} generated scenes, INT4 group {args.group}, mixed plan at "
                  f"{args.avg_bits} bits per weight. Total {total:.0f} s.", "", "## Stages", "",
                  "| stage | status | seconds | detail |", "|---|---|---|---|"]
        for s in p.stages.values():
            lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail.replace('|', '/')} |")
        sections = [("Sensitivity (task-loss increase per unit)", "sensitivity.png", "sensitivity"),
                    ("Size, latency, peak memory (ONNX Runtime, CPU)", "bench/bench.png", "bench"),
                    ("Depth maps", "depth.png", "figures"), ("Point clouds", "points.png", "figures")]
        # Stages delete their earlier outputs when they start (``_fresh``), so what exists is this run's.
        if p.ok("bench") or (out / "bench" / "bench.md").exists():
            md = out / "bench" / "bench.md"
            if md.exists():
                table = [l for l in md.read_text(encoding="utf-8").splitlines() if l.startswith("|")]
                lines += ["", "## Benchmark", ""] + table
        check_json = out / "check" / "check.json"
        if check_json.exists():
            doc = json.loads(check_json.read_text(encoding="utf-8"))
            lines += ["", "## Accuracy", "", f"Check {'PASSED' if doc['passed'] else 'FAILED'}; full report: "
                      "[check/check.md](check/check.md).", "",
                      "| runner | AUC@30 (%) | AbsRel | Chamfer |", "|---|---|---|---|"]
            for runner, m in doc.get("metrics_vs_ground_truth", {}).items():
                lines.append(f"| {runner} | {m.get('auc@30', float('nan')):.2f} | {m.get('abs_rel', float('nan')):.4f} "
                             f"| {m.get('chamfer', float('nan')):.4f} |")
            for prior, m in doc.get("camera_priors_vs_ground_truth", {}).items():
                lines.append(f"| prior: {prior} cameras (never sees the images) | {m.get('auc@30', float('nan')):.2f} "
                             f"| - | - |")
        for title, png, stage in sections:
            if (out / png).exists() and p.ok(stage):
                lines += ["", f"## {title}", "", f"![{title}]({png})"]
        lint_json = out / "lint.json"
        if lint_json.exists():
            doc = json.loads(lint_json.read_text(encoding="utf-8"))
            lines += ["", "## Lint", "", "| file | target | errors | warnings |", "|---|---|---|---|"]
            for f in doc["files"]:
                lines.append(f"| {Path(f['path']).name} | {f['target']} | {len(f['errors'])} | {len(f['warnings'])} |")
        write_text(out / "README.md", "\n".join(lines) + "\n")
        write_json(out / "demo.json", {"seconds": total, "random_weights": random,
                                       "stages": [vars(s) for s in p.stages.values()]})
