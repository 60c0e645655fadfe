"""``qvggt calibrate``: post-training quantization of VGGT into a recipe folder."""
from __future__ import annotations

import argparse
import json
import time

from qvggt_deploy.cli.args import (add_force_arg, add_model_args, add_out_arg, add_threads_arg, apply_threads,
                                   is_recipe_dir, resolve_device)
from qvggt_deploy.cli.base import Command
from qvggt_deploy.cli.calib_args import (add_budget_args, add_calib_data_args, add_method_args,
                                         load_calib_scenes, options_from_args)
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)


class Calibrate(Command):
    """Calibrate a quantization recipe (RTN, AWQ or QVGGT) on calibration scenes.

    Blocks are calibrated one at a time, each on the inputs the already-quantized blocks before
    it produce. Finished blocks are saved in OUT.work/ as they complete; rerunning the same
    command (same options, model and data) resumes there. With --avg-bits or --max-weight-mb,
    per-block sensitivities are measured first and each block gets one of --mp-options so that
    the summed sensitivity is minimal within the budget. The recipe (OUT/recipe.json +
    weights.safetensors) is written atomically; evaluate it with `qvggt eval --recipe OUT`. The
    seconds of each phase (sensitivity, FP32 targets, capture, compensation, scale search, clip
    search, finalist scoring, quantize, stream) are logged at the end and kept in recipe.json
    ("run": calibration_seconds, phase_seconds).

    With --stats FILE, only the float model's per-Linear activation statistics over the
    calibration scenes are collected (token counts, mean and max |x| per channel, compensation
    rows) and written to FILE (safetensors); launched by torchrun, the scenes are shared between
    the processes and their statistics merged (rank 0 writes).
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_model_args(parser)
        add_calib_data_args(parser)
        add_method_args(parser)
        add_budget_args(parser)
        target = parser.add_mutually_exclusive_group(required=True)
        add_out_arg(target, "folder", "the recipe", required=False,
                    extra="only an earlier recipe there is replaced; this or --stats")
        target.add_argument("--stats", default=None, metavar="FILE",
                            help="write the float model's activation statistics to FILE (.safetensors) instead of "
                                 "calibrating (special tokens left out as --method says; an earlier statistics file "
                                 "is replaced); shared between processes under torchrun")
        add_force_arg(parser, "a recipe folder")
        parser.add_argument("--keep-work", action="store_true", help="keep OUT.work/ after success")
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N. Defaults to cpu.")
        add_threads_arg(parser)

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.model.checkpoint import load_model
        from qvggt_deploy.quant.calibrate import calibrate
        from qvggt_deploy.quant.phases import PhaseClock
        from qvggt_deploy.quant.recipe import model_fingerprint
        from qvggt_deploy.quant.workstore import WorkStore

        if args.stats:
            return write_statistics(args)
        from qvggt_deploy.datasets.distributed import launched_by_torchrun

        if launched_by_torchrun():
            raise QvggtError("calibrate --out runs in one process (each unit is searched on every scene); under "
                             "torchrun only --stats is shared between processes")
        check_outputs(args)
        apply_threads(args.threads)
        device = resolve_device(args.device)
        opts = options_from_args(args)
        mp_options(args)  # before the work folder exists
        start = time.perf_counter()
        model = load_model(args.preset, args.checkpoint, device=device, allow_random=args.allow_random_weights)
        fingerprint = model_fingerprint(model)
        scenes, data_digest = load_calib_scenes(args, model, device)
        logger.info("calibration: %d scene(s) of %d frame(s), method %s, %s, group %d",
                    len(scenes), scenes[0].shape[1], opts.method, opts.precision, opts.group)
        budget_args = {"avg_bits": args.avg_bits, "max_weight_mb": args.max_weight_mb,
                       "mp_options": args.mp_options if (args.avg_bits or args.max_weight_mb) else None}
        from qvggt_deploy.fileio import sha256_file

        sens_digest = sha256_file(args.sensitivity) if getattr(args, "sensitivity", None) else None
        work = WorkStore(f"{args.out}.work", {"options": opts.to_json(), "budget": budget_args,
                                              "fingerprint": fingerprint, "data": data_digest,
                                              "sensitivity": sens_digest})  # another table, another plan
        plan = None
        shapes = layer_shapes(model)  # before calibration swaps the Linears
        phases = PhaseClock()
        calib_start = time.perf_counter()
        try:
            if args.avg_bits is not None or args.max_weight_mb is not None:
                with phases("sensitivity"):
                    plan = plan_for(model, scenes, opts, args, work)
            recipe = calibrate(model, scenes, opts, plan.units if plan else None, work, fingerprint, phases)
        except BaseException:
            if not any(p.name != "key.json" for p in work.folder.iterdir()):
                work.remove()  # nothing to resume from: no stray folder after a refusal
            raise
        if plan:
            recipe.extra["plan"] = plan.to_json()
        recipe.extra["weight_bytes"] = recipe_bytes(recipe, shapes)
        if plan and plan.budget is not None and recipe.extra["weight_bytes"] > plan.budget:
            logger.warning("the recipe's Linear weights (%d bytes) exceed the budget (%d bytes): the plan's costs and "
                           "calibration disagree", recipe.extra["weight_bytes"], plan.budget)
        recipe.extra["calibration"] = {"source": args.calib or "synthetic", "scenes": len(scenes),
                                       "frames": int(scenes[0].shape[1]), "seed": args.seed,
                                       "data_sha256": data_digest}  # no timings: the digest must be stable
        seconds = time.perf_counter() - calib_start
        recipe.run = {"calibration_seconds": round(seconds, 2),
                      "phase_seconds": {k: round(v, 2) for k, v in phases.seconds.items()}}
        logger.info("calibration %.1f s: %s", seconds, phases.summary())
        recipe.save(args.out, force=args.force)
        if not args.keep_work:
            work.remove()
        counts = {}
        for spec in recipe.layers.values():
            counts[spec.precision] = counts.get(spec.precision, 0) + 1
        logger.info("recipe -> %s (%s; Linear weights %.3f MB; %.1f s)", args.out,
                    ", ".join(f"{n} {p}" for p, n in sorted(counts.items())), recipe.extra["weight_bytes"] / 1e6,
                    time.perf_counter() - start)
        return 0


def write_statistics(args) -> int:
    """``--stats``: the statistics pass, its scenes sharded over torchrun's processes."""
    from qvggt_deploy.datasets.distributed import init_shard, local_device
    from qvggt_deploy.fileio import check_output_file
    from qvggt_deploy.model.checkpoint import load_model
    from qvggt_deploy.quant.stats import collect_statistics, is_stats_file, save_statistics

    check_output_file(args.stats, ours=is_stats_file, what="statistics file", option="--stats", force=args.force)
    apply_threads(args.threads)
    device = local_device(resolve_device(args.device))
    opts = options_from_args(args)
    shard = init_shard(device.type)
    try:
        model = load_model(args.preset, args.checkpoint, device=device, allow_random=args.allow_random_weights)
        scenes, data_digest = load_calib_scenes(args, model, "cpu")  # each rank moves its own share
        stats = collect_statistics(model, scenes, opts.token_filter, opts.comp_directions, shard.rank,
                                   shard.world_size)
        if shard.rank == 0:
            save_statistics(stats, args.stats, {"preset": args.preset, "scenes": str(len(scenes)),
                                                "token_filter": str(opts.token_filter),
                                                "comp_directions": str(opts.comp_directions),
                                                "data_sha256": data_digest, "processes": str(shard.world_size)},
                            force=args.force)
            logger.info("activation statistics of %d Linears over %d scene(s), %d process(es) -> %s", len(stats),
                        len(scenes), shard.world_size, args.stats)
        shard.barrier()
    finally:
        shard.close()
    return 0


def check_outputs(args) -> None:
    """--out and its resumable OUT.work/ before any work: a folder of someone else's files at
    either is refused (the work folder is deleted when calibration ends)."""
    from qvggt_deploy.fileio import check_output_dir
    from qvggt_deploy.quant.workstore import KEY_FILE

    check_output_dir(args.out, ours=is_recipe_dir, what="recipe folder (no recipe.json)", force=args.force)
    check_output_dir(f"{args.out}.work", ours=KEY_FILE, what="calibration work folder (no key.json)",
                     option="--out (work folder)", force=args.force)


def layer_shapes(model):
    from qvggt_deploy.quant.targets import candidate_linears

    return {n: (lin.out_features, lin.in_features) for n, lin in candidate_linears(model).items()}


def recipe_bytes(recipe, shapes) -> int:
    """Deployed bytes of all candidate Linears under ``recipe`` (layers it does not list: fp16)."""
    from qvggt_deploy.quant.config import weight_bytes

    total = 0.0
    for name, (n, k) in shapes.items():
        spec = recipe.layers.get(name)
        total += weight_bytes(n, k, spec.precision if spec else "fp16", spec.group if spec else None)
    return int(total)


def mp_options(args):
    """The --mp-options precisions, each one known."""
    from qvggt_deploy.quant.config import get_precision

    options = [o.strip() for o in args.mp_options.split(",") if o.strip()]
    if not options:
        raise QvggtError("--mp-options is empty; name the precisions a block may get (e.g. fp16,w8a16,w4a16)")
    for o in options:
        get_precision(o)
    return options


def plan_for(model, scenes, opts, args, work):
    """Sensitivity (measured, reused from --sensitivity, or from the work folder) -> plan."""
    from qvggt_deploy.quant.mixed import budget_from, count_weights, make_plan
    from qvggt_deploy.quant.sensitivity import measure_sensitivity
    from qvggt_deploy.quant.targets import quant_units

    options = mp_options(args)
    measured = [o for o in options if o != "fp32"]  # fp16 too: its rounding is not always negligible
    if args.sensitivity:
        try:
            with open(args.sensitivity, encoding="utf-8") as f:
                sens = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise QvggtError(f"{args.sensitivity}: unreadable sensitivity file ({exc})") from exc
        if sens.get("group") != opts.group or not set(measured) <= set(sens.get("precisions", [])):
            raise QvggtError(f"{args.sensitivity}: measured with group {sens.get('group')} and "
                             f"{sens.get('precisions')}; need group {opts.group} and {measured}")
    else:
        sens = work.load_json("sensitivity")
        if sens is None:
            sens = measure_sensitivity(model, scenes, measured, opts.group, opts.task_weights,
                                       opts.act_granularity, opts.act_calib)
            work.save_json("sensitivity", sens)
    units = quant_units(model)
    budget = budget_from(args.avg_bits, args.max_weight_mb, count_weights(model, units))
    plan = make_plan(model, units, sens["task"], budget, opts.group, options)
    logger.info("mixed precision: %s; %.3f MB, %.2f bits/weight avg, summed sensitivity %.3g",
                ", ".join(f"{p} x{list(plan.units.values()).count(p)}" for p in options),
                plan.bytes / 1e6, plan.avg_bits, plan.sensitivity)
    return plan
