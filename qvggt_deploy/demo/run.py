"""The demo's stages, each a library call: sensitivity, calibration (W4A16 and a mixed plan),
exports, lint, check, bench and figures, into one report folder (:mod:`.report`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from qvggt_deploy.demo.pipeline import Pipeline, Stage, fresh
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.quant.calibrate import DEFAULT_METHOD

logger = get_logger(__name__)

# Precisions of the demo's mixed plan; sensitivity must measure exactly these (calibrate checks).
MIXED_OPTIONS = ("fp16", "w4a16")


@dataclass(frozen=True)
class DemoOptions:
    preset: str = "tiny"
    method: str = DEFAULT_METHOD
    calib_scenes: int = 4
    frames: int = 4
    group: int = 32
    avg_bits: float = 5.0
    check_scenes: int = 8  # 48 camera pairs: 2 scenes (12 pairs) gave AUC@30 0.00-3.33, noise
    bench_runs: int = 3
    threads: Optional[int] = None

    @classmethod
    def quick(cls, **changes) -> "DemoOptions":
        """Minimal settings (tests): 1 scene, 2 frames, RTN."""
        return cls(**{**changes, "calib_scenes": 1, "frames": 2, "check_scenes": 1, "bench_runs": 1, "method": "rtn"})


def check_demo_folder(out) -> Path:
    """A new or empty folder, or one an earlier demo wrote (it holds demo.json): the demo writes
    into it and removes its own stage outputs there, so it never works in someone else's folder."""
    from qvggt_deploy.demo.report import MARK
    from qvggt_deploy.fileio import check_output_dir

    out = check_output_dir(out, replace=False)
    if out.is_dir() and any(out.iterdir()) and not (out / MARK).is_file():
        raise QvggtError(f"--out {out}: exists and is not a demo report folder (no {MARK}); it is left alone "
                         f"(choose another folder)")
    return out


def export_file(preset: str, path: Path, recipe_dir, size: int, **options):
    """One export of the demo through the library (``export_onnx``); the file is replaced whole."""
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.export.options import ExportOptions
    from qvggt_deploy.model.checkpoint import load_model

    recipe = None
    if recipe_dir is not None:
        from qvggt_deploy.quant.recipe import load_recipe

        recipe = load_recipe(recipe_dir)
    opts = ExportOptions(height=size, width=size, free_weights=True, **options)  # the model is loaded for it
    return export_onnx(load_model(preset), path, opts, recipe=recipe)


def run_demo(opts: DemoOptions, out) -> Tuple[Pipeline, float]:
    """Run every stage into ``out`` and write its README.md; the pipeline and the seconds taken."""
    from qvggt_deploy.backends.limits import check_calibration_fits
    from qvggt_deploy.demo.report import MARK, write_report
    from qvggt_deploy.fileio import write_json
    from qvggt_deploy.model.checkpoint import ModelSource, default_checkpoint
    from qvggt_deploy.model.presets import get_preset
    from qvggt_deploy.quant.calibrate import CalibOptions
    from qvggt_deploy.quant.run import CalibData, CalibrateOptions, SensitivityOptions, calibrate_to, sensitivity_table
    from qvggt_deploy.threads import apply_threads

    out = check_demo_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARK).exists():
        write_json(out / MARK, {"stages": []})  # ours from the start: an interrupted run may be rerun here
    apply_threads(opts.threads)
    size = get_preset(opts.preset).img_size
    p = Pipeline()
    model = ModelSource(opts.preset)
    data = CalibData(synthetic=opts.calib_scenes, frames=opts.frames)
    recipes = {"w4a16": out / "recipes" / "w4a16", "mixed": out / "recipes" / "mixed"}
    onnx_dir = out / "onnx"
    start = time.perf_counter()

    def weights(stage: Stage) -> None:
        ckpt = default_checkpoint(opts.preset)
        stage.detail = (f"embedded checkpoint {ckpt.name}" if ckpt else
                        "no embedded checkpoint for this preset: RANDOM weights (every number in this report "
                        "describes an untrained network)")
        stage.artifacts["random_weights"] = "no" if ckpt else "yes"

    def sensitivity(stage: Stage) -> None:
        from qvggt_deploy.quant.sensitivity import save_sensitivity

        table = sensitivity_table(SensitivityOptions(model=model, data=data, precisions=MIXED_OPTIONS,
                                                     group=opts.group), check_calibration_fits)
        save_sensitivity(table, out / "sensitivity.json", out / "sensitivity.png")
        stage.artifacts = {"json": "sensitivity.json", "png": "sensitivity.png"}

    def calibrate(name: str, **budget) -> Callable[[Stage], None]:
        def fn(stage: Stage) -> None:
            calib = CalibrateOptions(model=model, data=data, calib=CalibOptions.for_method(opts.method, group=opts.group),
                                     **budget)
            calibrate_to(calib, recipes[name], check_calibration_fits)
            said = [f"--{k.replace('_', '-')} {','.join(v) if isinstance(v, tuple) else v}" for k, v in budget.items()]
            stage.detail = f"method {opts.method}, group {opts.group}" + (f", {' '.join(said)}" if said else "")
            stage.artifacts["recipe"] = str(recipes[name].relative_to(out))
        return fn

    def export(name: str, recipe, **options) -> Callable[[Stage], None]:
        def fn(stage: Stage) -> None:
            path = onnx_dir / f"{name}.onnx"
            export_file(opts.preset, path, recipe, size, **options)
            stage.artifacts["onnx"] = str(path.relative_to(out))
        return fn

    p.run("model", weights)
    p.run("sensitivity", sensitivity, needs=["model"])
    p.run("calibrate-w4a16", calibrate("w4a16"), needs=["model"])
    p.run("calibrate-mixed", calibrate("mixed", avg_bits=opts.avg_bits, mp_options=MIXED_OPTIONS,
                                       sensitivity=str(out / "sensitivity.json")), needs=["sensitivity"])
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
    ort_files = [(n, f) for n, f in files.items() if n != "w4a16-trt"]

    def lint(stage: Stage) -> None:
        from qvggt_deploy.export.lint import lint_file

        fresh(out / "lint.json")
        results = [lint_file(path) for path in files.values()]
        write_json(out / "lint.json", {"files": [r.to_dict() for r in results]})
        stage.artifacts["json"] = "lint.json"
        failed = [Path(r.path).name for r in results if not r]
        if failed:
            raise QvggtError(f"lint found errors in {', '.join(failed)} (see lint.json)")

    def check(stage: Stage) -> None:
        from qvggt_deploy.check.run import CheckOptions, check_exports, write_check

        fresh(out / "check")
        try:
            run = check_exports(CheckOptions(
                onnx=ort_files, model=model, scenes=opts.check_scenes, frames=opts.frames, threads=opts.threads,
                recipes=tuple(str(recipes[n]) for n in ("w4a16", "mixed") if p.ok(f"calibrate-{n}"))))
            paths = write_check(run, out / "check")
            print(paths["md"].read_text(encoding="utf-8"))
            if not run.result:
                raise QvggtError("check FAILED: a gated pair differs (see check/check.md)")
        finally:
            stage.artifacts = {"md": "check/check.md", "json": "check/check.json"}

    def bench(stage: Stage) -> None:
        from qvggt_deploy.bench.report import markdown_table
        from qvggt_deploy.bench.suite import BenchOptions, report_paths, run_bench, write_bench

        fresh(out / "bench")
        report = run_bench(BenchOptions(backend="ort", models=ort_files, frames=opts.frames, runs=opts.bench_runs,
                                        threads=opts.threads))
        write_bench(report, *report_paths(out / "bench"))
        print(markdown_table(report.results))
        stage.artifacts = {"md": "bench/bench.md", "png": "bench/bench.png", "json": "bench/bench.json"}

    def figures(stage: Stage) -> None:
        draw_figures(out, files, opts, stage)

    p.run("lint", lint, needs=["export-fp32"])
    p.run("check", check, needs=["export-fp32"])
    p.run("bench", bench, needs=["export-fp32"])
    p.run("figures", figures, needs=["export-fp32"])
    total = time.perf_counter() - start
    write_report(out, p, opts, size, total)
    return p, total


def draw_figures(out: Path, files: Dict[str, Path], opts: DemoOptions, stage: Stage) -> None:
    """Depth maps and point clouds of the float and quantized ORT files on one held-out scene."""
    from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx
    from qvggt_deploy.demo.figures import depth_figure, point_cloud_figure
    from qvggt_deploy.graph.io import OUTPUT_NAMES
    from qvggt_deploy.graph.metadata import ExportMetadata
    from qvggt_deploy.metrics.evaluate import eval_scenes

    h, w = ExportMetadata.read(files["fp32"]).size_hw
    scene = next(iter(eval_scenes(1, frames=opts.frames, seed=1000, image_size=(h, w))))
    images = scene.images.numpy()
    preds = {}
    for name in ("fp32", "w4a16", "mixed"):
        if name in files:
            sess = SessionFromOnnx(files[name], threads=opts.threads)()
            preds[f"ORT {name}"] = dict(zip(OUTPUT_NAMES, sess.run(None, {"images": images})))
    depth_figure(images, scene.depth.numpy(), preds, out / "depth.png")
    point_cloud_figure(images, preds, out / "points.png")
    stage.artifacts = {"depth": "depth.png", "points": "points.png"}
