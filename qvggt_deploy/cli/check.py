"""``qvggt check``: accuracy of exported graphs (and engines) against PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Tuple

from qvggt_deploy.cli.args import add_model_args, apply_threads, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

REQUIRED_METADATA = ("height", "width", "preset", "recipe_digest", "target")  # what `qvggt export` writes

NO_TENSORRT = ("--trt needs the tensorrt Python package, which is not installed here (TensorRT ships with "
               "JetPack on Jetson; on a desktop GPU: pip install tensorrt)")


def parse_named(values: List[str], what: str) -> List[Tuple[str, Path]]:
    """``NAME=PATH`` or ``PATH`` (name = file stem) -> [(name, path)], names unique."""
    out, seen = [], set()
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).stem, value
        if name in seen:
            raise QvggtError(f"{what}: name {name!r} given twice")
        seen.add(name)
        out.append((name, Path(path)))
    return out


class Check(Command):
    """Compare backends: PyTorch (float and fake-quantized) vs ONNX Runtime files (and TensorRT engines).

    Every --onnx file is paired with the PyTorch model it must equal, from its metadata (recipe
    digest, conv precision): ORT files in exact mode are gated to float tolerance, everything
    else (int8 activations, TensorRT fp16) is reported. Task metrics (camera AUC@30, RRE/RTE,
    depth AbsRel, Chamfer) are computed against the generated scenes' ground truth and against
    the float model's outputs. Writes check.json and check.md to --out; exit 1 on failure.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        parser.add_argument("--recipe", action="append", default=[],
                            help="a recipe the quantized files were exported with (repeatable; matched by digest)")
        parser.add_argument("--onnx", action="append", default=[], metavar="[NAME=]PATH",
                            help="an exported file to check (repeatable)")
        parser.add_argument("--trt", action="append", default=[], metavar="[NAME=]ENGINE",
                            help="a TensorRT engine to check (repeatable; needs tensorrt and a GPU)")
        parser.add_argument("--scenes", type=positive_int, default=2, help="generated held-out scenes. Defaults to 2.")
        parser.add_argument("--frames", type=positive_int, default=2, help="frames per scene. Defaults to 2.")
        parser.add_argument("--seed", type=int, default=0, help="scene seed offset. Defaults to 0.")
        parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch and ORT)")
        parser.add_argument("--out", required=True, help="report folder (check.json, check.md)")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.backends import get_backend
        from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx
        from qvggt_deploy.backends.torch.loader import ModelFromPreset
        from qvggt_deploy.check.compare import Comparison, run_check
        from qvggt_deploy.check.report import write_report
        from qvggt_deploy.lazy import is_available
        from qvggt_deploy.metrics.evaluate import eval_scenes

        from qvggt_deploy.cli.limits import check_fits, forward_bytes, scenes_bytes
        from qvggt_deploy.export.validate import load_checked
        from qvggt_deploy.fileio import check_output_dir
        from qvggt_deploy.model.presets import get_preset

        check_output_dir(args.out, replace=False)
        apply_threads(args.threads)
        files = parse_named(args.onnx, "--onnx")
        engines = parse_named(args.trt, "--trt")
        if engines and not is_available("tensorrt"):
            raise QvggtError(NO_TENSORRT)
        if not files:
            raise QvggtError("give at least one --onnx file to check")
        if args.scenes < 1 or args.frames < 1:
            raise QvggtError("--scenes and --frames must be at least 1")
        recipes = {}
        if args.recipe:
            from qvggt_deploy.quant.recipe import load_recipe

            for path in args.recipe:
                rec = load_recipe(path)
                recipes[rec.digest] = rec
        metas = {name: load_checked(path)[1] for name, path in files}
        for (name, path), meta in zip(files, metas.values()):
            missing = [k for k in REQUIRED_METADATA if k not in meta]
            if missing:
                raise QvggtError(f"{path}: not a qvggt export (metadata qvggt.{missing[0]} missing); "
                                 f"make it with `qvggt export`")
            if not (meta["height"].isdigit() and meta["width"].isdigit()):
                raise QvggtError(f"{path}: bad qvggt.height/width metadata {meta['height']!r}x{meta['width']!r}")
        sizes = {(int(m["height"]), int(m["width"])) for m in metas.values()}
        if len(sizes) != 1:
            raise QvggtError(f"the --onnx files were exported for different sizes: {sorted(sizes)}")
        height, width = sizes.pop()
        cfg = get_preset(args.preset)
        # The torch references and one ORT session at a time, plus every scene with ground truth.
        need = (2 * forward_bytes(cfg, height, width, args.frames)
                + forward_bytes(cfg, height, width, args.frames, explicit_attention=True)
                + scenes_bytes(args.scenes, args.frames, height, width))
        check_fits(need, f"checking {args.scenes} scene(s) of {args.frames} frame(s) at {height}x{width}",
                   "use fewer --frames or --scenes")

        TorchRunner, OrtRunner = get_backend("torch"), get_backend("ort")
        torch_runners: Dict[tuple, object] = {}

        def torch_reference(digest: str, conv: str):
            key = (digest, conv)
            if key not in torch_runners:
                rec = None
                if digest != "none":
                    if digest not in recipes:
                        raise QvggtError(f"a file was exported with recipe {digest}; pass that recipe with --recipe "
                                         f"(given: {', '.join(recipes) or 'none'})")
                    rec = recipes[digest]
                label = "torch-fp32" if rec is None else f"torch-{rec.path.name if rec.path else rec.method.get('name', 'recipe')}"
                label += "" if conv == "fp32" else f"-conv{conv}"
                torch_runners[key] = TorchRunner(ModelFromPreset(args.preset, args.checkpoint, rec, conv, args.threads,
                                                                 allow_random=args.allow_random_weights),
                                                 name=label, height=height, width=width)
            return torch_runners[key]

        float_ref = torch_reference("none", "fp32")
        runners, comparisons, agree = [], [], []
        for name, path in files:
            meta = metas[name]
            if meta.get("preset") != args.preset:
                raise QvggtError(f"{path} was exported from preset {meta.get('preset')!r}, not --preset {args.preset}")
            ref = torch_reference(meta["recipe_digest"], meta.get("conv_precision", "fp32"))
            exact = meta["target"] == "ort" and meta.get("ort_accuracy_level", "0") in ("0", "session") \
                and meta.get("ort_int8_kernel", "none") == "none" and meta.get("float_precision", "fp32") == "fp32"
            runner = OrtRunner(SessionFromOnnx(path, accuracy_level=0, threads=args.threads), name=f"ort-{name}")
            runners.append(runner)
            comparisons.append(Comparison(runner.name, ref.name, "exact" if exact else "approx"))
            if exact:
                agree.append((runner.name, ref.name))
            if ref is not float_ref:
                comparisons.append(Comparison(runner.name, float_ref.name, "approx"))
        for name, path in engines:
            TrtRunner = get_backend("trt")
            runner = TrtRunner(str(path), name=f"trt-{name}")
            runners.append(runner)
            comparisons.append(Comparison(runner.name, float_ref.name, "approx"))
        for ref in torch_runners.values():
            if ref is not float_ref:
                comparisons.append(Comparison(ref.name, float_ref.name, "approx"))
        all_runners = list(torch_runners.values()) + runners

        scenes = list(eval_scenes(args.scenes, frames=args.frames, seed=args.seed, image_size=(height, width)))
        feeds = [{"images": s.images.numpy()} for s in scenes]
        logger.info("checking %d runners on %d scenes of %d frames at %dx%d", len(all_runners), len(scenes),
                    args.frames, height, width)
        result = run_check(all_runners, feeds, comparisons, ground_truth=scenes, agree=agree)
        notes = [f"preset {args.preset}, {height}x{width}, {args.frames} frames per scene, held-out generated scenes "
                 f"(seed offset {args.seed})"]
        notes += [f"`ort-{n}`: {p} (target {metas[n]['target']}, recipe {metas[n]['recipe_digest']}, "
                  f"accuracy level {metas[n].get('ort_accuracy_level', '-')}, int8 kernel "
                  f"{metas[n].get('ort_int8_kernel', 'none')}, computes {metas[n].get('ort_compute', '-')}, "
                  f"passes {metas[n].get('passes')})"
                  for n, p in files]
        paths = write_report(result, args.out, extra={"files": {n: str(p) for n, p in files},
                                                     "metadata": metas}, notes=notes)
        print(paths["md"].read_text(encoding="utf-8"))
        logger.info("report: %s, %s", paths["json"], paths["md"])
        return 0 if result else 1
