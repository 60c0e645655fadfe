"""``qvggt check``: accuracy of exported graphs (and engines) against PyTorch, on generated scenes
or the user's photos. What runs and what is gated is :mod:`qvggt_deploy.check.plan`."""
from __future__ import annotations

import argparse

from qvggt_deploy.cli.args import OptionValueError, add_model_args, apply_threads, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

NO_TENSORRT = ("--trt needs the tensorrt Python package, which is not installed here (TensorRT ships with "
               "JetPack on Jetson; on a desktop GPU: pip install tensorrt)")


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
    Runtime run of the --onnx file NAME. Inputs: held-out generated scenes (task metrics also against their ground truth), or with
    --images your photos (no ground truth: cameras, depth and points of each runner against its
    reference runner, plus depth and error maps). Writes check.json, check.md and figures/ to
    --out; exit 0 when every gate passed, 1 otherwise (as `polygraphy run`).
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
        parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch and ORT)")
        parser.add_argument("--out", required=True, help="report folder (check.json, check.md, figures/)")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.check.compare import run_check
        from qvggt_deploy.check.plan import parse_named, photo_inputs, plan_check, scene_inputs
        from qvggt_deploy.check.report import write_report
        from qvggt_deploy.cli.limits import check_fits, forward_bytes, scenes_bytes
        from qvggt_deploy.fileio import check_output_dir
        from qvggt_deploy.lazy import is_available
        from qvggt_deploy.model.presets import get_preset

        check_output_dir(args.out, replace=False)
        apply_threads(args.threads)
        files = parse_named(args.onnx, "--onnx")
        engines = parse_named(args.trt, "--trt")
        if engines and not is_available("tensorrt"):
            raise QvggtError(NO_TENSORRT)
        if not files:
            raise QvggtError("give at least one --onnx file to check")
        recipes = {}
        if args.recipe:
            from qvggt_deploy.quant.recipe import load_recipe

            for path in args.recipe:
                rec = load_recipe(path)
                recipes[rec.digest] = rec
        plan = plan_check(files, engines, preset=args.preset, checkpoint=args.checkpoint, recipes=recipes,
                          threads=args.threads, allow_random=args.allow_random_weights, gates=dict(args.gate),
                          engine_reference=args.trt_reference)
        height, width, metas = plan.height, plan.width, plan.metas
        cfg = get_preset(args.preset)
        if args.images:
            from qvggt_deploy.data.images import list_images

            frames = len(list_images(args.images)[: args.max_frames])
            samples, what = 1, f"checking {frames} photo(s) at {height}x{width}"
        else:
            frames, samples = args.frames, args.scenes
            what = f"checking {args.scenes} scene(s) of {args.frames} frame(s) at {height}x{width}"
        # The torch references and one ORT session at a time, plus every input.
        need = (2 * forward_bytes(cfg, height, width, frames)
                + forward_bytes(cfg, height, width, frames, explicit_attention=True)
                + scenes_bytes(samples, frames, height, width))
        check_fits(need, what, "use fewer --max-frames" if args.images else "use fewer --frames or --scenes")
        inputs = (photo_inputs(args.images, height, width, args.max_frames, args.mode, cfg.patch_size) if args.images
                  else scene_inputs(args.scenes, args.frames, args.seed, height, width))
        logger.info("checking %d runners on %s", len(plan.runners), inputs.description)
        result = run_check(plan.runners, inputs.feeds, plan.comparisons, ground_truth=inputs.ground_truth,
                           agree=plan.agree, keep_outputs=True)
        notes = [f"preset {args.preset}, {height}x{width}; inputs: {inputs.description}"]
        notes += [f"`ort-{n}`: {p} (target {metas[n]['target']}, recipe {metas[n]['recipe_digest']}, "
                  f"accuracy level {metas[n].get('ort_accuracy_level', '-')}, int8 kernel "
                  f"{metas[n].get('ort_int8_kernel', 'none')}, computes {metas[n].get('ort_compute', '-')}, "
                  f"passes {metas[n].get('passes')})"
                  for n, p in files]
        if args.allow_random_weights and not args.checkpoint:
            notes.append("random weights (--allow-random-weights): agreement only, no accuracy")
        paths = write_report(result, args.out, extra={"files": {n: str(p) for n, p in files}, "metadata": metas,
                                                     "images": inputs.names},
                             notes=notes, valid=inputs.valid, frame_names=inputs.names)
        print(paths["md"].read_text(encoding="utf-8"))
        logger.info("report: %s, %s", paths["json"], paths["md"])
        return 0 if result else 1
