"""ONNX export of VGGT: trace -> opset 21 -> graph passes -> metadata -> ``M.onnx`` (+ ``M.onnx.data``).

Pipeline (:func:`export_onnx`):

1. check the recipe against the model and fold its smoothing (``quant.recipe.apply_smoothing``,
   as ``apply_recipe`` does); the quantized layers' integers and scales come straight from the
   recipe (:func:`.qdq.plan_from_recipe`), so the graph computes what the fake-quantized model
   computes without building it;
2. trace :class:`~qvggt_deploy.export.trace.VGGTExport` inside ``export_view`` with the
   TorchScript exporter at opset 18 (Linears are markers, so no weight is traced and the trace
   stays small even for VGGT-1B), then ``onnx.version_converter`` to opset 21 (blocked
   ``DequantizeLinear``, INT4);
3. the graph passes :func:`~qvggt_deploy.export.plan.plan_passes` lists for the options
   (:class:`~qvggt_deploy.export.options.ExportOptions`): constant folding, attention and Linear
   lowering (the precision plan, see :mod:`qvggt_deploy.passes.lower_linears`), then the
   target's INT4 rewrites;
4. metadata (:class:`~qvggt_deploy.graph.metadata.ExportMetadata`) and one file, or one file
   plus one consolidated ``.data`` file when the weights exceed ~1.8 GB.
"""
from __future__ import annotations

import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from qvggt_deploy import __version__
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.export.convs import round_conv_weights
from qvggt_deploy.export.options import ExportOptions
from qvggt_deploy.export.plan import PassInputs, plan_body_passes, plan_passes
from qvggt_deploy.export.qdq import (
    plan_from_model,
    plan_from_recipe,
    prewrite_float_weights,
)
from qvggt_deploy.export.trace import (
    DENSE_TAPS,
    MARKER_DOMAIN,
    DenseHeadsFrame,
    VGGTExport,
    _register_symbolics,
    export_view,
    quiet_tracer,
)
from qvggt_deploy.graph.io import FRAMES_DIM, INPUT_NAME, OUTPUT_NAMES
from qvggt_deploy.graph.metadata import ExportMetadata
from qvggt_deploy.graph.tensors import TensorStore
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.lower_linears import LinearLowering
from qvggt_deploy.passes.registry import PassRunner
from qvggt_deploy.procstats import peak_rss_bytes


class _Phases:
    """Logs the wall time and the process's peak memory after each export phase (debug level)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.times: Dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = now - self.last
        self.last = now
        logger.debug("export phase %-22s %6.1f s (peak RSS %.2f GB)", name, self.times[name],
                     (peak_rss_bytes() or float("nan")) / 1e9)


onnx = lazy_import("onnx")
gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

TRACE_OPSET = 18
EXPORT_OPSET = 21
EXTERNAL_THRESHOLD = 1_800_000_000  # bytes of weights above which data goes to one external file
DENSE_OUTPUTS = ("depth", "depth_conf", "world_points", "world_points_conf")


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    data_path: Optional[Path]
    seconds: float
    passes: List[str]
    metadata: ExportMetadata
    op_counts: Dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size + (self.data_path.stat().st_size if self.data_path else 0)


def token_rule_layers(model: nn.Module) -> List[str]:
    """The Linears the token rule covers: every Linear of a ViT or aggregator block (not the
    camera head, whose tokens are all camera tokens; docs/method.md)."""
    from qvggt_deploy.quant.targets import quant_units

    return [n for u in quant_units(model) if u.kind in ("vit", "frame", "global") for n in u.linears]


def ort_compute(int8_activations: bool, kernel: str, special_bypass: bool) -> str:
    """What the INT4 layers of an ORT file compute, for metadata and reports."""
    if not int8_activations:
        return "exact (fp32 math on the dequantized weights)"
    if kernel == "qgemm":
        return ("W8A8, dynamic per-tensor int8 activations (INT4 weights re-gridded to int8 per channel); "
                + ("special tokens bypass the int8 GEMM" if special_bypass else "no special-token bypass"))
    return "W4A8, dynamic per-block int8 activations (MatMulNBits accuracy level 4)"


def tokens_per_frame(cfg, height: int, width: int) -> int:
    """Tokens of one frame in the aggregator (and in the DINOv2 blocks): 5 + patches."""
    return cfg.patch_start_idx + (height // cfg.patch_size) * (width // cfg.patch_size)


def trace_to_onnx(model: nn.Module, height: int, width: int, frames: int = 1, dense_marker: bool = False):
    """Trace ``model`` at ``frames x 3 x height x width`` (frames dynamic): an opset-18 ModelProto
    with ``qvggt.Linear``/``qvggt.Attention`` (and with ``dense_marker`` ``qvggt.DenseHeads``)
    markers and no Linear weights."""
    dynamic = {INPUT_NAME: {0: FRAMES_DIM}, **{name: {1: FRAMES_DIM} for name in OUTPUT_NAMES}}
    _register_symbolics()
    buf = io.BytesIO()
    dummy = torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    with export_view(model, height, width), quiet_tracer(), torch.no_grad():
        torch.onnx.export(VGGTExport(model, dense_marker), (dummy,), buf, dynamo=False, opset_version=TRACE_OPSET,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic,
                          custom_opsets={MARKER_DOMAIN: 1}, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def trace_dense_body(model: nn.Module, height: int, width: int):
    """Trace the two DPT heads on one frame (static shapes): the body of the per-frame Loop."""
    cfg = model.cfg
    n = tokens_per_frame(cfg, height, width)
    gen = torch.Generator().manual_seed(0)
    taps = [torch.rand(1, 1, n, 2 * cfg.embed_dim, generator=gen) for _ in range(DENSE_TAPS)]
    image = torch.rand(1, 1, 3, height, width, generator=gen)
    _register_symbolics()
    buf = io.BytesIO()
    with export_view(model, height, width), quiet_tracer(), torch.no_grad():
        torch.onnx.export(DenseHeadsFrame(model), (*taps, image), buf, dynamo=False, opset_version=TRACE_OPSET,
                          input_names=[f"tap_{k}" for k in range(DENSE_TAPS)] + ["image"],
                          output_names=[f"frame_{name}" for name in DENSE_OUTPUTS], do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def _plan_bytes(plan: Dict[str, LinearLowering]) -> int:
    """Bytes the plan's Linear weights and biases will take in the file (decides external data)."""
    from qvggt_deploy.quant.config import weight_bytes

    return int(sum(weight_bytes(s.out_features, s.in_features, s.precision, s.group) + 4 * s.out_features
                   for s in plan.values()))


def _set_io(graph, height: int, width: int) -> None:
    by_name = {t.name: t for t in graph.inputs}
    if set(by_name) != {INPUT_NAME}:
        raise QvggtError(f"export: unexpected graph inputs {sorted(by_name)}")
    by_name[INPUT_NAME].dtype = np.float32
    by_name[INPUT_NAME].shape = [FRAMES_DIM, 3, height, width]
    shapes = {
        "pose_enc": [1, FRAMES_DIM, 9],
        "depth": [1, FRAMES_DIM, height, width, 1],
        "depth_conf": [1, FRAMES_DIM, height, width],
        "world_points": [1, FRAMES_DIM, height, width, 3],
        "world_points_conf": [1, FRAMES_DIM, height, width],
    }
    if [t.name for t in graph.outputs][: len(OUTPUT_NAMES)] != list(OUTPUT_NAMES):
        raise QvggtError(f"export: unexpected graph outputs {[t.name for t in graph.outputs]}")
    for t in graph.outputs[: len(OUTPUT_NAMES)]:
        t.dtype, t.shape = np.float32, shapes[t.name]


def _opset_imports(graph):
    used = sorted({n.domain for n in graph.nodes if n.domain and n.domain not in ("", "ai.onnx")})
    if MARKER_DOMAIN in used:
        bad = next(n for n in graph.nodes if n.domain == MARKER_DOMAIN)
        raise QvggtError(f"export: marker node {bad.name} ({bad.op}) was not lowered")
    return [onnx.helper.make_opsetid("", EXPORT_OPSET)] + [onnx.helper.make_opsetid(d, 1) for d in used]


def _lowering_plan(model: nn.Module, recipe, options: ExportOptions):
    """Fold the recipe's smoothing, then the conv rounding, into ``model`` (the recipe's check
    fingerprints the unrounded weights); (the Linears' lowering plan, whether convs were rounded)."""
    if recipe is not None:
        from qvggt_deploy.quant.recipe import apply_smoothing, check_compatible

        check_compatible(recipe, model)
        apply_smoothing(model, recipe)
    convs_rounded = bool(round_conv_weights(model, options.conv_precision))
    plan = plan_from_recipe(model, recipe, options.float_precision) if recipe is not None \
        else plan_from_model(model, options.float_precision)
    if options.calibration_graph:  # activations are what a calibrator observes: keep them float
        for spec in plan.values():
            spec.abits = spec.act_granularity = spec.act_scale = None
            spec.special_bypass = False
    return plan, convs_rounded


def _external(model: nn.Module, plan: Dict[str, LinearLowering], external_data: str) -> bool:
    """Whether the weights go to one external file (``auto``: above :data:`EXTERNAL_THRESHOLD`)."""
    nonlinear = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                    if not n.startswith("track_head") and n.rsplit(".", 1)[0] not in plan)
    return {"auto": _plan_bytes(plan) + nonlinear > EXTERNAL_THRESHOLD, "always": True, "never": False}[external_data]


def _pass_inputs(model: nn.Module, recipe, options: ExportOptions, plan, store, convs_rounded: bool) -> PassInputs:
    cfg = model.cfg
    comp = {}
    if options.calibration_graph:
        comp = {name: recipe.compensation(name).numpy() for name in recipe.token_filter.get("layers", [])
                if recipe.compensation(name) is not None}
    return PassInputs(lowering=plan, store=store, tokens_per_frame=tokens_per_frame(cfg, options.height, options.width),
                      num_special=cfg.patch_start_idx, convs_rounded=convs_rounded, compensation=comp,
                      token_rule_layers=token_rule_layers(model) if options.qgemm else ())


def run_plan(graph, steps, on_pass=None):
    """Run ``[(pass, kwargs)]`` on ``graph``; (the graph, the names of the passes run)."""
    runner = PassRunner(graph, on_pass=on_pass)
    for name, kwargs in steps:
        runner.run(name, **kwargs)
    return runner.graph, runner.names


def export_metadata(model: nn.Module, recipe, options: ExportOptions, passes, plan) -> ExportMetadata:
    """The ``qvggt.*`` metadata of an export."""
    cfg, ort = model.cfg, options.target == "ort"
    has_int4 = any(spec.wbits == 4 for spec in plan.values())
    ort_fields = dict(ort_int4=options.ort_int4,
                      ort_accuracy_level=str(options.accuracy_level) if options.ort_int4 == "matmulnbits" else "session",
                      ort_int8_kernel=options.ort_int8_kernel if options.ort_int8_activations else "none",
                      ort_compute=ort_compute(options.ort_int8_activations, options.ort_int8_kernel,
                                              options.ort_int8_special_bypass and options.qgemm and has_int4))
    return ExportMetadata(
        preset=cfg.name, target=options.target, height=options.height, width=options.width,
        tokens_per_frame=tokens_per_frame(cfg, options.height, options.width), num_special=cfg.patch_start_idx,
        float_precision=options.float_precision, conv_precision=options.conv_precision,
        dense_loop=options.dense_loop, calibration_graph=options.calibration_graph,
        recipe_digest=recipe.digest if recipe is not None else "none",
        recipe_method=json.dumps(recipe.method, sort_keys=True) if recipe is not None else "none",
        passes=tuple(passes), plan={k: v.precision for k, v in plan.items()},
        tool=f"qvggt-deploy {__version__}; torch {torch.__version__} TorchScript exporter, "
             f"opset {TRACE_OPSET} -> {EXPORT_OPSET}",
        **(ort_fields if ort else {}))


def _finish(graph, metadata: ExportMetadata, cfg):
    """The ModelProto of the final graph: I/O shapes, opsets, metadata, producer; and its op counts."""
    _set_io(graph, metadata.height, metadata.width)
    graph.name = f"vggt_{cfg.name}_{metadata.target}"
    model_proto = gs.export_onnx(graph, opset_imports=_opset_imports(graph))
    metadata.write(model_proto)
    model_proto.producer_name, model_proto.producer_version = "qvggt-deploy", __version__
    model_proto.doc_string = (f"VGGT ({cfg.name}) at {metadata.height}x{metadata.width}, dynamic frames; "
                              f"target {metadata.target}; recipe {metadata.recipe_digest}")
    return model_proto, dict(Counter(n.op for n in graph.nodes).most_common())


def export_onnx(model: nn.Module, out, options: Optional[ExportOptions] = None, *, recipe=None,
                **option_kwargs) -> ExportResult:
    """Export ``model`` (a VGGT) to ONNX for one input size and a dynamic frame count.

    Args:
        model (VGGT): float model in eval mode; with ``recipe`` its smoothing is folded in place
            (and with ``conv_precision="fp16"`` its DPT conv weights are rounded in place).
        out (path): the ``.onnx`` file to write (its folder is created).
        options (ExportOptions, optional): what to export; or give its fields as keywords
            (``height=..., width=..., target=...``).
        recipe (Recipe, optional): calibrated plan to fold in as QDQ. Defaults to None (float).

    Returns:
        ExportResult.

    Raises:
        QvggtError: bad size or options, a recipe made for another model.
    """
    options = options if options is not None else ExportOptions(**option_kwargs)
    start, cfg, out = time.perf_counter(), model.cfg, Path(out)
    options.check_model(cfg.patch_size, recipe is not None)
    model.eval()
    phase = _Phases()
    plan, convs_rounded = _lowering_plan(model, recipe, options)
    phase("recipe")
    external = _external(model, plan, options.external_data)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = TensorStore(out, external=external)
    try:
        inputs = _pass_inputs(model, recipe, options, plan, store, convs_rounded)
        if options.free_weights:
            inputs.constants = prewrite_float_weights(plan, store)
            for name in plan:
                model.get_submodule(name).weight = None
            phase("write-float-weights")
        logger.info("tracing %s at %dx%d (%d frames, dynamic)", cfg.name, options.height, options.width, options.frames)
        proto = trace_to_onnx(model, options.height, options.width, options.frames, dense_marker=options.dense_loop)
        if options.dense_loop:
            body = onnx.version_converter.convert_version(trace_dense_body(model, options.height, options.width),
                                                          EXPORT_OPSET)
            inputs.body = run_plan(gs.import_onnx(body), plan_body_passes(options, inputs))[0]
        phase("trace")
        graph = gs.import_onnx(onnx.version_converter.convert_version(proto, EXPORT_OPSET))
        del proto
        phase(f"opset-{EXPORT_OPSET}")
        graph, applied = run_plan(graph, plan_passes(options, inputs), on_pass=phase)
        metadata = export_metadata(model, recipe, options, applied, plan)
        model_proto, op_counts = _finish(graph, metadata, cfg)
        del graph
        store.save(model_proto, out)
        phase("save")
    except BaseException:
        store.close()
        raise
    data_path = out.with_name(f"{out.name}.data") if external else None
    result = ExportResult(out, data_path, time.perf_counter() - start, applied, metadata, op_counts)
    logger.info("wrote %s (%.1f MB%s) in %.1f s; passes: %s", out, result.bytes / 1e6,
                ", external data" if external else "", result.seconds, ", ".join(applied))
    return result
