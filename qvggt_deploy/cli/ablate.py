"""``qvggt ablate``: the QVGGT component ablation as Markdown + JSON tables."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from qvggt_deploy.cli.args import (add_force_arg, add_model_args, add_out_arg, add_threads_arg, apply_threads,
                                   positive_float, positive_int)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import add_calib_data_args, add_method_args, load_calib_scenes, options_from_args
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

JSON, MD = "ablation.json", "ablation.md"


class Ablate(Command):
    """Calibrate and evaluate FP32, RTN, AWQ, +mixed precision, +token filtering/compensation,
    +task-aware search (= QVGGT), and INT8-activation and search-cost rows.

    Every row starts from the same float model and calibration scenes and is scored on the same
    held-out generated scenes (seeds 10^9 + SEED + i) with camera AUC@30, depth AbsRel and
    delta<1.25, Chamfer (points, after Umeyama) and cross-head consistency. Writes the folder
    OUT (ablation.md, ablation.json); row results are cached in OUT.work/ (rerun to resume).
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
        parser.add_argument("--avg-bits", type=positive_float, default=5.0,
                            help="mixed-precision budget of the +mp rows, bits per Linear weight. Defaults to 5.0.")
        parser.add_argument("--mp-options", default="fp16,w8a16,w4a16", help="precisions a block may get")
        parser.add_argument("--rows", default="all",
                            help="comma-separated row names or tables (main, a8, tradeoff, all). Defaults to all.")
        add_out_arg(parser, "folder", f"the tables ({JSON}, {MD})",
                    extra="row results are cached in OUT.work/ beside it (rerun to resume)")
        add_force_arg(parser, "an ablation folder")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.fileio import write_json, write_text
        from qvggt_deploy.metrics.evaluate import eval_scenes
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.quant.ablation import ROWS, checks, format_markdown, run_ablation
        from qvggt_deploy.quant.mixed import budget_from, count_weights, make_plan
        from qvggt_deploy.quant.recipe import model_fingerprint
        from qvggt_deploy.quant.sensitivity import measure_sensitivity
        from qvggt_deploy.quant.targets import quant_units
        from qvggt_deploy.quant.workstore import WorkStore

        switches = ("no_smooth", "no_clip_search", "no_token_filter", "no_task_search")
        fixed = [f"--{k.replace('_', '-')}" for k in switches if getattr(args, k)]
        fixed += ["--method"] if args.method != "qvggt" else []
        fixed += ["--abits"] if args.abits else []
        fixed += ["--wbits"] if args.wbits != 4 else []
        if fixed:
            raise QvggtError(f"qvggt ablate sets {', '.join(fixed)} itself, row by row (W4 rows; the a8 table adds "
                             f"INT8 activations); leave them out")
        from qvggt_deploy.fileio import atomic_dir, check_output_dir

        check_output_dir(args.out, ours=JSON, what="qvggt ablate folder (no ablation.json)", force=args.force)
        check_output_dir(f"{args.out}.work", option="--out (work folder)", replace=False)
        apply_threads(args.threads)
        wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
        rows = [r for r in ROWS if "all" in wanted or r.name in wanted or r.table in wanted]
        if not rows:
            raise QvggtError(f"--rows {args.rows}: no such rows; known: {', '.join(r.name for r in ROWS)}")
        base = options_from_args(args)
        start = time.perf_counter()

        def fresh():
            return load_model(args.preset, args.checkpoint, device="cpu", allow_random=args.allow_random_weights)

        model = fresh()
        calib, data_digest = load_calib_scenes(args, model, "cpu")
        size = args.image_size or model.cfg.img_size
        logger.info("rendering %d evaluation scenes", args.eval_scenes)
        scenes = list(eval_scenes(args.eval_scenes, args.eval_frames, args.eval_seed, (size, size)))
        key = {"fingerprint": model_fingerprint(model), "calib": data_digest, "eval": [args.eval_scenes,
               args.eval_frames, args.eval_seed, args.max_points], "avg_bits": args.avg_bits,
               "mp_options": args.mp_options}
        work = Path(f"{args.out}.work")
        options = [o.strip() for o in args.mp_options.split(",")]

        def plan_for(float_model):
            store = WorkStore(work / "sensitivity", {**key, "group": base.group, "weights": base.task_weights})
            sens = store.load_json("sensitivity")
            measured = [o for o in options if o != "fp32"]
            if sens is None:
                sens = measure_sensitivity(float_model, calib, measured, base.group, base.task_weights)
                store.save_json("sensitivity", sens)
            units = quant_units(float_model)
            budget = budget_from(args.avg_bits, None, count_weights(float_model, units))
            return make_plan(float_model, units, sens["task"], budget, base.group, options)

        result = run_ablation(fresh, calib, scenes, base, rows, plan_for, work, key, args.max_points)
        names = {r["name"] for r in result["rows"]}
        if {"fp32", "rtn", "qvggt"} <= names:
            result["checks"] = checks(result, "qvggt")
        if {"fp32", "rtn", "qvggt-w4"} <= names:
            result["checks_w4"] = checks(result, "qvggt-w4")
        settings = {"preset": args.preset, "checkpoint": args.checkpoint or "embedded",
                    "calib": f"{len(calib)} {'generated' if not args.calib else args.calib} scenes x "
                             f"{args.frames} frames (seed {args.seed})",
                    "eval": f"{args.eval_scenes} held-out generated scenes x {args.eval_frames} frames "
                            f"(seeds 10^9 + {args.eval_seed} + i)",
                    "group": base.group, "budget": f"{args.avg_bits} bits/weight ({args.mp_options})",
                    "base_options": base.to_json(), "seconds": time.perf_counter() - start}
        result["settings"] = settings
        with atomic_dir(args.out, ours=JSON, force=args.force) as tmp:
            write_json(tmp / JSON, result)
            write_text(tmp / MD, format_markdown(result, settings))
        logger.info("ablation -> %s, %s", Path(args.out) / MD, Path(args.out) / JSON)
        if result.get("checks"):
            for name, ok in result["checks"].items():
                logger.info("%s %s", "PASS" if ok else "FAIL", name)
        return 0
