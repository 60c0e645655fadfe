"""``qvggt eval``: geometry metrics of a model on held-out generated scenes (or saved scenes)."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from qvggt_deploy.cli.args import add_device_args, add_model_args, apply_threads, positive_int, resolve_device
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

CAMERA_KEYS = ("auc@30", "auc@15", "rra@15", "rta@15", "rre_deg", "rte_deg")
TABLE_KEYS = ("auc@30", "auc@15", "rra@15", "rta@15", "rre_deg", "rte_deg", "abs_rel", "delta_1.25",
              "accuracy", "completeness", "chamfer", "depthcam_chamfer", "consistency")


def format_table(result: Dict[str, Any]) -> str:
    """Model vs the trivial baseline and, for the camera rows, the camera priors (arrows say
    which way is better). A camera figure means something only beside the priors'."""
    from qvggt_deploy.metrics.baselines import CAMERA_PRIORS
    from qvggt_deploy.metrics.summary import higher_is_better

    mean = result["mean"]
    baselines = result["baselines"]
    columns = ["trivial"] + [name for name in CAMERA_PRIORS if name in baselines]
    header = {"trivial": "trivial", "forward": "fwd prior", "mean_trajectory": "mean traj"}
    lines = [f"{'metric':<20}{'model':>12}" + "".join(f"{header.get(c, c):>12}" for c in columns),
             "-" * (32 + 12 * len(columns))]
    for key in TABLE_KEYS:
        if key not in mean:
            continue
        arrow = "^" if higher_is_better(key) else "v"
        row = f"{key + ' ' + arrow:<20}{mean[key]:12.4f}"
        for name in columns:
            base = baselines.get(name, {}).get("mean", {})
            ref = base.get(key, base.get(key.replace("depthcam_", "")))
            if name != "trivial" and key not in CAMERA_KEYS:
                ref = None  # the priors' depth and points are the trivial ones
            row += f"{ref:12.4f}" if ref is not None else f"{'-':>12}"
        lines.append(row)
    lines.append(f"({result['num_scenes']} scenes; trivial: {baselines.get('trivial', {}).get('description', '-')}; "
                 f"trivial cameras = the identity prior)")
    return "\n".join(lines)


def add_benchmark_args(parser: argparse.ArgumentParser) -> None:
    """The public-benchmark options (``--dataset``, ``--compare``); see docs/metrics.md."""
    from qvggt_deploy.datasets import READERS

    group = parser.add_argument_group("public benchmarks (docs/metrics.md)")
    group.add_argument("--dataset", choices=list(READERS), default=None,
                       help="evaluate on a public benchmark in its official layout under --root instead of "
                            "generated scenes: co3d, re10k (cameras), dtu, eth3d (depth and points)")
    group.add_argument("--root", default=None, help="with --dataset: the dataset folder")
    group.add_argument("--out", default=None, metavar="DIR",
                       help="with --dataset: run folder (rows/*.jsonl appended per sequence, results.json, "
                            "results.md); rerunning with the same settings resumes. With --compare: where "
                            "compare.json/.md/.png go")
    group.add_argument("--num-frames", type=positive_int, default=10,
                       help="with --dataset: frames sampled per sequence (seeded by --seed). Defaults to 10, "
                            "the official protocol.")
    group.add_argument("--limit", type=positive_int, default=None,
                       help="with --dataset: at most this many sequences per category (the official fast "
                            "evaluation uses 10). Defaults to all.")
    group.add_argument("--categories", nargs="+", default=None,
                       help="with --dataset co3d: these categories only. Defaults to the 41 of VGGT's table found.")
    group.add_argument("--backend", choices=["torch", "ort", "trt"], default="torch",
                       help="with --dataset: torch (--preset/--checkpoint/--recipe), ort (--model .onnx) or trt "
                            "(--model .engine). Defaults to torch.")
    group.add_argument("--model", default=None, help="with --backend ort or trt: the model file")
    group.add_argument("--label", default=None,
                       help="with --dataset: the method's name in tables. Defaults to the recipe's method and "
                            "bit widths, the model file name, or FP32.")
    group.add_argument("--compare", nargs="+", default=None, metavar="RUN_DIR",
                       help="compare finished --dataset runs of the same frames (first = reference): paired "
                            "differences with standard errors, a paper-style table and a chart")


def _benchmark(args: argparse.Namespace) -> int:
    from qvggt_deploy.datasets.distributed import launched_by_torchrun

    if args.compare:
        from qvggt_deploy.datasets.compare import compare_runs, comparison_markdown

        print(comparison_markdown(compare_runs(args.compare, args.out)))
        return 0
    if not args.root or not args.out:
        raise QvggtError("--dataset needs --root (the dataset folder) and --out (the run folder)")
    stray = [o for o, v in (("--json", args.json), ("--scene-dir", args.scene_dir)) if v]
    if stray:
        raise QvggtError(f"{', '.join(stray)} {'apply' if len(stray) > 1 else 'applies'} to generated or saved "
                         f"scenes; a --dataset run writes "
                         f"results.json and results.md into --out")
    if args.activations != "fp32":
        raise QvggtError("--activations applies to generated-scene evaluations; --dataset runs the recipe as "
                         "--backend runs it")
    if args.categories and args.dataset != "co3d":
        raise QvggtError("--categories applies to --dataset co3d only")
    apply_threads(args.threads)
    from qvggt_deploy.cli.infer import DTYPES
    from qvggt_deploy.datasets.run import run_benchmark

    result = run_benchmark(args.dataset, args.root, args.out, num_frames=args.num_frames, seed=args.seed,
                           limit=args.limit, backend=args.backend, model=args.model, preset=args.preset,
                           checkpoint=args.checkpoint, recipe=args.recipe, dtype=DTYPES[args.dtype],
                           device=args.device if launched_by_torchrun() else resolve_device(args.device),
                           threads=args.threads, max_points=args.max_points,
                           reader_options={"categories": args.categories} if args.categories else None,
                           label=args.label)
    if result is not None:
        from qvggt_deploy.datasets.tables import result_markdown

        print(result_markdown(result))
    return 0


class Evaluate(Command):
    """Evaluate a model on held-out generated scenes or public benchmarks: cameras, depth, points.

    Generated scenes use seeds 10^9 + SEED + i (never used in training). With --scene-dir the
    scenes are read from disk instead (a scene folder, or a folder of them; see docs/scenes.md).
    The same metrics are computed for a trivial baseline (constant depth = median GT depth of
    frame 0, identity cameras with the true intrinsics) and for two camera priors that never look
    at the images (identity rotations + forward translation; the mean training trajectory) on the
    same scenes. --json writes means, per-scene values and the baselines; a table is printed.

    With --dataset co3d|re10k|dtu|eth3d --root DIR --out RUN the model is scored on a public
    benchmark with its official protocol (docs/metrics.md): --num-frames seeded frames per
    sequence, results appended per sequence (a rerun resumes), results.json and results.md at the
    end. Under torchrun the sequences are shared among the processes. --compare RUN1 RUN2 ...
    compares finished runs of the same frames.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        data = parser.add_argument_group("scenes")
        data.add_argument("--scenes", type=int, default=64, help="generated scenes. Defaults to 64.")
        data.add_argument("--frames", type=int, default=4, help="frames per generated scene. Defaults to 4.")
        data.add_argument("--seed", type=int, default=0,
                          help="first evaluation seed offset (scene i uses 10^9 + SEED + i); with --dataset, the "
                               "frame sampling seed (official: 0). Defaults to 0.")
        data.add_argument("--scene-dir", default=None, help="evaluate saved scene folders instead of generating")
        parser.add_argument("--recipe", default=None,
                            help="quantization recipe folder: evaluate the fake-quantized model it describes")
        parser.add_argument("--activations", choices=["fp32", "fp16"], default="fp32",
                            help="with --recipe: the quantized Linears' arithmetic. fp16 = what the W4A16 kernel "
                                 "and TensorRT compute (fp16 inputs and weights, fp32 sums, fp16 outputs); "
                                 "fp32 = exact fp32 emulation. Defaults to fp32.")
        parser.add_argument("--max-points", type=int, default=5000,
                            help="points per cloud for Chamfer (random subset, fixed seed). Defaults to 5000.")
        parser.add_argument("--json", default=None, metavar="FILE",
                            help="also write all metrics (mean, per scene, baseline) as JSON (replaced whole)")
        add_benchmark_args(parser)
        add_device_args(parser)

    def run(self, args: argparse.Namespace) -> int:
        if args.dataset or args.compare:
            return _benchmark(args)
        given = [o for o, v in (("--root", args.root), ("--out", args.out), ("--model", args.model)) if v]
        if given or args.backend != "torch":
            named = given or ["--backend"]
            raise QvggtError(f"{', '.join(named)} {'apply' if len(named) > 1 else 'applies'} to --dataset "
                             f"evaluations; generated scenes run the torch model")
        import torch

        from qvggt_deploy.cli.infer import DTYPES
        from qvggt_deploy.data.scene_io import list_scene_dirs, read_scene
        from qvggt_deploy.fileio import write_json
        from qvggt_deploy.metrics.evaluate import eval_scenes, evaluate_model, torch_model_fn
        from qvggt_deploy.model.checkpoint import load_model

        if args.json:
            from qvggt_deploy.fileio import check_output_file

            check_output_file(args.json, what="JSON report", option="--json")  # before the work, not after
        apply_threads(args.threads)
        device = resolve_device(args.device)
        model = load_model(args.preset, args.checkpoint, device="cpu", allow_random=args.allow_random_weights)
        if args.recipe:
            from qvggt_deploy.quant.fake import set_activations
            from qvggt_deploy.quant.recipe import apply_recipe, load_recipe

            apply_recipe(model, load_recipe(args.recipe))
            set_activations(model, args.activations)
        elif args.activations != "fp32":
            raise QvggtError("--activations fp16 sets the quantized layers' arithmetic; it needs --recipe")
        model = model.to(device)
        patch = model.cfg.patch_size
        if args.scene_dir:
            dirs = list_scene_dirs(args.scene_dir)

            def scenes():
                for d in dirs:
                    scene = read_scene(d)
                    H, W = scene.images.shape[-2:]
                    if H % patch or W % patch:
                        raise QvggtError(f"{d}: images are {W}x{H} (WxH); the model needs multiples of {patch}")
                    yield scene

            source, total = scenes(), len(dirs)
        else:
            if args.scenes < 1 or args.frames < 2:
                raise QvggtError(f"--scenes must be >= 1 and --frames >= 2 (got {args.scenes}, {args.frames})")
            size = model.cfg.img_size
            source, total = eval_scenes(args.scenes, args.frames, args.seed, (size, size)), args.scenes
        dtype = DTYPES[args.dtype]
        model_fn = torch_model_fn(model, device, getattr(torch, dtype) if dtype else None)
        from qvggt_deploy.metrics.baselines import CAMERA_PRIORS

        result = evaluate_model(model_fn, source, baselines=("trivial",) + CAMERA_PRIORS,
                                max_points=args.max_points, total=total)
        result["settings"] = {"preset": args.preset, "checkpoint": args.checkpoint or "embedded",
                              "recipe": args.recipe, "activations": args.activations,
                              "scene_dir": args.scene_dir,
                              "scenes": None if args.scene_dir else args.scenes,
                              "frames": None if args.scene_dir else args.frames,
                              "seed": None if args.scene_dir else args.seed, "dtype": args.dtype,
                              "max_points": args.max_points, "device": str(device)}
        if args.json:
            write_json(args.json, result)
            logger.info("metrics -> %s", args.json)
        print(format_table(result))
        return 0
