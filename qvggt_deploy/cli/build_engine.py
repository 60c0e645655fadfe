"""``qvggt build-engine``: ONNX -> TensorRT engine for a device profile."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qvggt_deploy.cli.args import add_out_arg
from qvggt_deploy.cli.base import Command
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger

logger = get_logger(__name__)

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def _custom_nodes(onnx_path: Path) -> Dict[str, int]:
    """op_type -> count of nodes outside the standard ONNX domains (plugin candidates)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    counts: Dict[str, int] = {}
    for node in model.graph.node:
        if node.domain not in STANDARD_DOMAINS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _check_target(onnx_path: Path) -> None:
    """Refuse graphs exported for ONNX Runtime (MatMulNBits, fused attention: not TensorRT ops)."""
    from qvggt_deploy.graph.metadata import read_metadata

    target = read_metadata(onnx_path).get("target")
    if target is not None and target != "trt":
        raise QvggtError(f"{onnx_path} was exported for ONNX Runtime (qvggt.target={target}); export the TensorRT "
                         f"graph with `qvggt export --target trt [--trt-plugin]`")


def _check_plugins(onnx_path: Path, plugin: Optional[Path]) -> None:
    """Refuse a graph with plugin nodes but no --plugin, and plugin nodes that break the contract."""
    custom = _custom_nodes(onnx_path)
    if custom and plugin is None:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(custom.items()))
        raise QvggtError(f"{onnx_path} has plugin nodes ({listed}); pass --plugin kernels/build/cmake/trt_plugin/libqvggt_trt_plugin.so")
    if not custom:
        return
    from qvggt_deploy.trt.plugin import check_plugin_nodes, load_contract

    try:
        contract = load_contract()
    except QvggtError as exc:
        logger.warning("%s; plugin nodes not checked", exc)
        return
    import onnx

    problems = check_plugin_nodes(onnx.load(str(onnx_path), load_external_data=False), contract)
    if problems:
        raise QvggtError(f"{onnx_path}: plugin nodes do not match the plugin contract: " + "; ".join(problems[:5]))


class BuildEngine(Command):
    """Build a TensorRT engine from a strongly typed ONNX graph for a device profile.

    The graph (from `qvggt export --target trt`) carries its precisions as QDQ and Cast nodes; the
    network is created STRONGLY_TYPED, so no precision flag is set and nothing silently stays fp32.
    The profile (engines/*.yaml) gives the frame range of the optimisation profile, the workspace and
    tactic memory limits, the builder optimisation level, the timing cache and split: true | false |
    auto. A sidecar E.engine.json records TensorRT, CUDA, device, recipe digest, profile, memory plan,
    plugin library hash and build time.

    Split mode builds two engines, E.aggregator.engine and E.heads.engine, from --onnx (the aggregator
    graph) and --heads-onnx; E.engine.json then lists both and `TrtRunner("E.engine")` chains them.
    --export-split DIR writes the two float graphs from the PyTorch model.

    --dry-run prints the memory plan (max frames, split decision) and needs no TensorRT.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--onnx", help="ONNX graph (split mode: the aggregator graph)")
        parser.add_argument("--heads-onnx", help="split mode: the heads graph")
        parser.add_argument("--profile", required=True, help="deployment profile, e.g. engines/orin-nano-8gb.yaml")
        add_out_arg(parser, "file", ".engine", required=False,
                    extra="its sidecar OUT.json and, in split mode, the part engines go beside it")
        parser.add_argument("--plugin", default=None,
                            help="TensorRT plugin library (.so) for the W4A16 plugin nodes. Defaults to none.")
        parser.add_argument("--timing-cache", default=None,
                            help="timing cache file (loaded, then saved atomically). Defaults to the profile's "
                                 "builder.timing_cache next to the engine.")
        parser.add_argument("--split", choices=("true", "false", "auto"), default=None,
                            help="override the profile's split setting")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the memory plan and exit (no TensorRT needed)")
        parser.add_argument("--export-split", metavar="DIR", default=None,
                            help="export the aggregator and heads ONNX graphs (float) of the profile's preset "
                                 "to DIR and exit")
        parser.add_argument("--checkpoint", default=None,
                            help="--export-split: a weights file (.safetensors, .pt or .pth) of the profile's preset; "
                                 "without it the graphs get random weights (shapes and memory only)")

    def run(self, args: argparse.Namespace) -> int:
        from qvggt_deploy.trt import memory
        from qvggt_deploy.trt.profiles import load_profile

        profile = load_profile(args.profile)
        if args.split is not None:
            import dataclasses

            profile = dataclasses.replace(profile, split={"true": True, "false": False}.get(args.split, "auto"))
        if args.export_split:
            from qvggt_deploy.fileio import check_output_dir

            check_output_dir(args.export_split, option="--export-split", replace=False)
            return self._export_split(profile, Path(args.export_split), args.checkpoint)
        if not args.dry_run:
            from qvggt_deploy.trt.builder import require_tensorrt

            require_tensorrt()
            if not args.onnx or not args.out:
                raise QvggtError("--onnx and --out are required (or --dry-run / --export-split)")
        if args.out and not args.dry_run:
            from qvggt_deploy.fileio import check_output_file

            check_output_file(args.out, what="engine file")
            if args.timing_cache:
                check_output_file(args.timing_cache, what="timing cache", option="--timing-cache")
        onnx_paths = [Path(p) for p in (args.onnx, args.heads_onnx) if p]
        for path in onnx_paths:
            from qvggt_deploy.export.validate import load_checked

            load_checked(path)  # a 0-byte file or missing external data has no memory plan
            _check_target(path)
        weights = self._weights(profile, onnx_paths)
        plan = memory.plan(profile, weights)
        self._report(profile, plan, weights)
        if args.dry_run:
            return 0
        if profile.frames.max > plan.max_frames:
            logger.warning("frames.max %d is above the memory estimate for %s (%d frames): the build or the first "
                           "inference may run out of memory", profile.frames.max, profile.name, plan.max_frames)
        out = Path(args.out)
        timing_cache = Path(args.timing_cache) if args.timing_cache else profile.timing_cache_path(out)
        plugin = Path(args.plugin) if args.plugin else None
        plan_doc = self._plan_doc(plan, weights)
        if plan.split:
            if not args.heads_onnx:
                raise QvggtError(f"profile {profile.name} builds split engines ({plan.reason}): pass --onnx "
                                 f"<aggregator graph> and --heads-onnx <heads graph> (--export-split DIR writes them)")
            return self._build_split(profile, onnx_paths[0], onnx_paths[1], out, plugin, timing_cache, plan_doc)
        self._build_one(profile, onnx_paths[0], out, plugin, timing_cache, plan_doc, "full")
        return 0

    # ---- steps ----------------------------------------------------------------------------------
    @staticmethod
    def _weights(profile, onnx_paths: List[Path]):
        from qvggt_deploy.trt import memory

        if not onnx_paths:
            return memory.weight_bytes_for_preset(profile.model.preset, profile.model.weights,
                                                  image=(profile.model.height, profile.model.width))
        parts = [memory.weight_bytes_from_onnx(p) for p in onnx_paths]
        if len(parts) == 2:
            return memory.WeightBytes(total=parts[0].total + parts[1].total,
                                      by_part={"aggregator": parts[0].total, "heads": parts[1].total},
                                      source=" + ".join(p.source for p in parts))
        return parts[0]

    @staticmethod
    def _report(profile, plan, weights) -> None:
        from qvggt_deploy.trt.memory import gib

        est = plan.estimate
        print(f"profile {profile.name}: budget {gib(profile.device.budget_bytes)} GiB "
              f"({profile.device.description})")
        print(f"weights {gib(weights.total)} GiB ({weights.source})")
        print(f"max frames: full engine {plan.max_frames_full}, split engines {plan.max_frames_split}")
        print(f"mode: {'split' if plan.split else 'full'} ({plan.reason})")
        print(f"at frames.max {est.frames}: runtime {gib(est.runtime_peak)} GiB, build {gib(est.build_peak)} GiB")

    @staticmethod
    def _plan_doc(plan, weights) -> Dict:
        return {"split": plan.split, "reason": plan.reason, "max_frames_full": plan.max_frames_full,
                "max_frames_split": plan.max_frames_split, "weights_bytes": weights.total,
                "runtime_peak_bytes": plan.estimate.runtime_peak, "build_peak_bytes": plan.estimate.build_peak}

    @staticmethod
    def _device_facts() -> Tuple[Dict, Dict]:
        from qvggt_deploy.trt.cuda import get_api

        try:
            api = get_api()
            return api.device_info(), api.versions()
        except QvggtError as exc:
            logger.warning("device facts not recorded in the sidecar: %s", exc)
            return {}, {}

    def _build_one(self, profile, onnx_path: Path, out: Path, plugin, timing_cache, plan_doc, part: str) -> Dict:
        from qvggt_deploy.trt.builder import build_engine, tensorrt_version
        from qvggt_deploy.trt.sidecar import make_sidecar, write_sidecar

        _check_plugins(onnx_path, plugin)
        logger.info("building %s from %s (frames %d..%d, opt %d)", out, onnx_path, profile.frames.min,
                    profile.frames.max, profile.frames.opt)
        seconds = build_engine(onnx_path, profile, out, plugin_library=plugin, timing_cache=timing_cache)
        device, cuda = self._device_facts()
        doc = make_sidecar(engine_path=out, onnx_path=onnx_path, profile=profile.to_dict(), plan=plan_doc, part=part,
                           tensorrt_version=tensorrt_version(), device=device, cuda=cuda, plugin_library=plugin,
                           build_seconds=seconds)
        path = write_sidecar(out, doc)
        print(f"engine {out} ({doc['engine']['bytes'] / (1 << 20):.1f} MiB, {seconds:.0f} s), sidecar {path}")
        return doc

    def _build_split(self, profile, agg_onnx: Path, heads_onnx: Path, out: Path, plugin, timing_cache,
                     plan_doc) -> int:
        from qvggt_deploy.fileio import write_json
        from qvggt_deploy.trt.sidecar import FORMAT, VERSION, sidecar_path

        stem = out.name[: -len(".engine")] if out.name.endswith(".engine") else out.name
        agg_out, heads_out = out.with_name(f"{stem}.aggregator.engine"), out.with_name(f"{stem}.heads.engine")
        docs = [self._build_one(profile, agg_onnx, agg_out, plugin, timing_cache, plan_doc, "aggregator"),
                self._build_one(profile, heads_onnx, heads_out, plugin, timing_cache, plan_doc, "heads")]
        manifest = {"format": FORMAT, "version": VERSION, "part": "split",
                    "engine": {"file": out.name, "sha256": None, "bytes": 0},
                    "split": {"aggregator": agg_out.name, "heads": heads_out.name},
                    "tensorrt": docs[0]["tensorrt"], "device": docs[0]["device"], "cuda": docs[0]["cuda"],
                    "recipe_digest": docs[0]["recipe_digest"], "profile": profile.to_dict(), "plan": plan_doc,
                    "plugin": docs[0]["plugin"], "build": docs[1]["build"]}
        write_json(sidecar_path(out), manifest)
        print(f"split engines {agg_out.name} + {heads_out.name}; run them as {out} (manifest {sidecar_path(out)})")
        return 0

    @staticmethod
    def _export_split(profile, out_dir: Path, checkpoint: Optional[str]) -> int:
        from qvggt_deploy.model import build_model, get_preset
        from qvggt_deploy.trt.split import export_split

        cfg = get_preset(profile.model.preset).replace(enable_track=False)  # the track head is not deployed
        model = build_model(cfg)
        if checkpoint:
            from qvggt_deploy.model.checkpoint import iter_state_dict

            state = {k: v for k, v in iter_state_dict(checkpoint) if not k.startswith("track_head.")}
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise QvggtError(f"{checkpoint}: does not fit preset {cfg.name} ({str(exc).splitlines()[0]})") from exc
        else:
            logger.warning("no --checkpoint: exporting random weights (shapes and memory only)")
        from qvggt_deploy.graph.metadata import extra_props

        plan, agg, heads = export_split(model.eval(), out_dir, profile.model.height, profile.model.width,
                                        metadata=extra_props(profile=profile.name))
        print(json.dumps({"aggregator": str(agg), "heads": str(heads), "boundary": plan.to_dict()}, indent=2))
        return 0
