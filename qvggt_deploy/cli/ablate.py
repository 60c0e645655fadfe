"""``qvggt ablate``: the QVGGT component ablation as Markdown + JSON tables."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from qvggt_deploy.cli.args import add_force_arg, add_model_args, add_out_arg, add_threads_arg, apply_threads, positive_int
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import add_calib_data_args, add_method_args, load_calib_scenes, options_from_args
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

JSON, MD, PNG = "ablation.json", "ablation.md", "ablation.png"


class Ablate(Command):
    """Calibrate and evaluate, in each setting (W4 g128, W3 g128, W4A8 with static activation
    scales): RTN, AWQ, AWQ + mixed precision, + token filtering, + compensation rows, + task-aware
    search (= QVGGT), and QVGGT at the setting's bits; one FP32 row serves all settings.

    Every row starts from the same float model and calibration scenes and is scored on the same
    held-out generated scenes (seeds 10^9 + SEED + i) with camera AUC@30, depth AbsRel and
    delta<1.25, Chamfer (points, after Umeyama) and cross-head consistency; weight-only rows also
    with fp16 activations (the W4A16 kernel's arithmetic). Differences are paired per scene, with
    standard errors, against FP32 and against the AWQ row of equal average bits; each step's
    marginal effect has a mean +- 2 SE interval. Writes the folder OUT
    (ablation.md, ablation.json, ablation.png; without matplotlib no chart); row results are cached
    in OUT.work/ beside it (rerun to resume).
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
        parser.add_argument("--settings", default="all",
                            help="comma-separated settings: w4 (W4A16), w3 (W3A16), w4a8, or all; the group is "
                                 "--group. Defaults to all.")
        parser.add_argument("--rows", default="all",
                            help="comma-separated rows (fp32, rtn, awq, awq+mp, awq+mp+filter, awq+mp+comp, qvggt, "
                                 "qvggt-nomp) or SETTING/ROW names (e.g. w4g128/awq), or all. Defaults to all.")
        add_out_arg(parser, "folder", f"the tables and chart ({JSON}, {MD}, {PNG})",
                    extra="row results are cached in OUT.work/ beside it (rerun to resume)")
        add_force_arg(parser, "an ablation folder")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.fileio import write_json, write_text
        from qvggt_deploy.metrics.evaluate import eval_scenes
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.quant.ablation import run_ablation, select
        from qvggt_deploy.quant.ablation_report import INTERVAL, acceptance, analyse, format_markdown, write_chart
        from qvggt_deploy.quant.recipe import model_fingerprint

        switches = ("no_smooth", "no_clip_search", "no_token_filter", "no_task_search")
        fixed = [f"--{k.replace('_', '-')}" for k in switches if getattr(args, k)]
        fixed += ["--method"] if args.method != "qvggt" else []
        fixed += ["--abits"] if args.abits else []
        fixed += ["--wbits"] if args.wbits != 4 else []
        if fixed:
            raise QvggtError(f"qvggt ablate sets {', '.join(fixed)} itself, row by row (the settings fix the bits; "
                             f"the rows the method switches); leave them out")
        from qvggt_deploy.fileio import atomic_dir, check_output_dir

        check_output_dir(args.out, ours=JSON, what="qvggt ablate folder (no ablation.json)", force=args.force)
        check_output_dir(f"{args.out}.work", option="--out (work folder)", replace=False)
        entries = select([w.strip() for w in args.settings.split(",") if w.strip()],
                         [w.strip() for w in args.rows.split(",") if w.strip()], args.group)
        if not entries:
            raise QvggtError(f"--settings {args.settings} --rows {args.rows}: no row selected")
        apply_threads(args.threads)
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
               args.eval_frames, args.eval_seed, args.max_points, size]}
        result = run_ablation(fresh, calib, scenes, base, entries, Path(f"{args.out}.work"), key, args.max_points)
        analyse(result)
        result["acceptance"] = acceptance(result)
        result["settings"] = _settings(args, base, len(calib), size, time.perf_counter() - start, INTERVAL)
        with atomic_dir(args.out, ours=JSON, force=args.force) as tmp:
            write_json(tmp / JSON, result)
            write_text(tmp / MD, format_markdown(result, result["settings"]))
            chart = write_chart(result, tmp / PNG)
        logger.info("ablation -> %s (%s, %s%s)", args.out, MD, JSON, f", {PNG}" if chart else "")
        for c in result["acceptance"]:
            logger.info("%s %s", {True: "PASS", False: "FAIL", None: "NOT RUN"}[c["passed"]], c["criterion"])
        return 0


def _settings(args, base, calib_scenes: int, size: int, seconds: float, interval: str) -> dict:
    """What the ablation ran on, for the JSON (scenes, seeds, checkpoint digest, CPU, threads)."""
    import hashlib

    import torch

    from qvggt_deploy.model.checkpoint import default_checkpoint, resolve_checkpoint
    from qvggt_deploy.procstats import cpu_info
    from qvggt_deploy.quant.ablation import SETTINGS

    path = resolve_checkpoint(args.checkpoint) if args.checkpoint else default_checkpoint(args.preset)
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    return {"preset": args.preset, "checkpoint": args.checkpoint or ("embedded" if path else "random weights"),
            "checkpoint_sha256": sha, "eval_scenes": args.eval_scenes, "eval_frames": args.eval_frames,
            "eval_seed": args.eval_seed, "calib_scenes": calib_scenes, "calib_frames": args.frames,
            "calib_seed": args.seed, "calib_source": args.calib or "generated", "image_size": size,
            "max_points": args.max_points,
            "calib": f"{calib_scenes} {'generated' if not args.calib else args.calib} scenes x {args.frames} frames "
                     f"(seed {args.seed})",
            "eval": f"{args.eval_scenes} held-out generated scenes x {args.eval_frames} frames "
                    f"(seeds 10^9 + {args.eval_seed} + i)",
            "group": args.group, "interval": interval,
            "settings": [{"name": s.with_group(args.group).name, "kind": s.kind, "title": s.title, "wbits": s.wbits,
                          "abits": s.abits, "budget_avg_bits": s.budget, "mp_options": list(s.mp_options)}
                         for s in SETTINGS],
            "base_options": base.to_json(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": cpu_info(), "seconds": seconds}
