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
3. passes: ``fold-constants``, ``dedupe-constants``, ``fp16-conv-weights`` (with
   ``conv_precision="fp16"``), ``band-upsampled-convs`` (``--target ort``: the DPT heads'
   full-resolution tail in row bands), ``lower-attention`` (fused MultiHeadAttention on ORT,
   MatMul/Softmax for TensorRT), ``lower-linears`` (the precision plan, see :mod:`.qdq`),
   ``bypass-special-tokens`` (when the plan quantizes activations with a special-token bypass),
   ``int4-to-qgemm`` (``--target ort`` with int8 activations, "qgemm" kernel: W8A8, dynamic per-tensor),
   ``int4-to-matmulnbits`` (``--target ort``) or ``w4a16-plugin`` (``--target trt --trt-plugin``),
   ``cleanup``;
4. metadata (``qvggt.*``: target, size, plan, recipe digest, passes) and one file, or one file
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
from qvggt_deploy.backends.io import FRAMES_DIM, INPUT_NAME, OUTPUT_NAMES
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.export.convs import CONV_ROOTS, round_conv_weights
from qvggt_deploy.export.qdq import TARGETS, LinearLowering, plan_from_model, plan_from_recipe, prewrite_float_weights
from qvggt_deploy.export.tensors import TensorStore
from qvggt_deploy.export.trace import (DENSE_TAPS, MARKER_DOMAIN, DenseHeadsFrame, VGGTExport, _register_symbolics,
                                       export_view, quiet_tracer)
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.log import get_logger
from qvggt_deploy.passes.registry import PassRunner


class _Phases:
    """Logs the wall time and the process's peak memory after each export phase (debug level)."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.times: Dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = now - self.last
        self.last = now
        logger.debug("export phase %-22s %6.1f s (peak RSS %.2f GB)", name, self.times[name], _peak_rss_gb())


def _peak_rss_gb() -> float:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
    except ImportError:  # not on Linux: no figure
        return float("nan")

onnx = lazy_import("onnx")
gs = lazy_import("onnx_graphsurgeon")

logger = get_logger(__name__)

TRACE_OPSET = 18
EXPORT_OPSET = 21
FORMAT = "qvggt-onnx/1"
EXTERNAL_THRESHOLD = 1_800_000_000  # bytes of weights above which data goes to one external file
ORT_INT4_FORMS = ("matmulnbits", "qdq")
ORT_INT8_KERNELS = ("qgemm", "matmulnbits")
# Row bands of the DPT heads' full-resolution tail on ORT (VGGT-1B, 2 frames at 518x518: W4A16 peak
# RSS 2.00 -> 1.61 GB with 4 bands; docs/export.md).
DENSE_BANDS = 4
DENSE_OUTPUTS = ("depth", "depth_conf", "world_points", "world_points_conf")
META = "qvggt."


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    data_path: Optional[Path]
    seconds: float
    passes: List[str]
    metadata: Dict[str, str]
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


def export_onnx(model: nn.Module, out, *, height: int, width: int, recipe=None, target: str = "ort",
                frames: int = 1, float_precision: str = "fp32", ort_int8_activations: bool = False,
                ort_int8_kernel: str = "qgemm", ort_int4: str = "matmulnbits", trt_plugin: bool = False,
                conv_precision: str = "fp32", calibration_graph: bool = False, external_data: str = "auto",
                free_weights: bool = False, dense_loop: bool = False,
                ort_int8_special_bypass: bool = True) -> ExportResult:
    """Export ``model`` (a VGGT) to ONNX for one input size and a dynamic frame count.

    Args:
        model (VGGT): float model in eval mode; with ``recipe`` its smoothing is folded in place
            (and with ``conv_precision="fp16"`` its DPT conv weights are rounded in place).
        out (path): the ``.onnx`` file to write (its folder is created).
        height (int): input height, a multiple of 14.
        width (int): input width, a multiple of 14.
        recipe (Recipe, optional): calibrated plan to fold in as QDQ. Defaults to None (float).
        target (str): "ort" (CPU, exact fp32 emulation of the fake-quantized model) or "trt"
            (strongly typed QDQ with fp16 Casts). Defaults to "ort".
        frames (int): frames of the tracing input (the exported dim is dynamic; tested exact at 1-3
            frames whatever the tracing count). Defaults to 1 (the cheapest trace).
        float_precision (str): precision of Linears the recipe does not list: "fp32" or "fp16".
            Defaults to "fp32".
        ort_int8_activations (bool): ``--target ort``: INT4 layers with int8 activations (faster,
            not exact; see ``ort_int8_kernel``). Defaults to False (exact fp32 math).
        ort_int8_kernel (str): with ``ort_int8_activations``: "qgemm" = **W8A8, dynamic
            per-tensor activations** (``DynamicQuantizeMatMul`` on the INT4 weights re-gridded to
            int8 per channel, stored; see ``passes/int4_to_qgemm.py``) or "matmulnbits" = **W4A8,
            dynamic per-block activations** (``MatMulNBits`` ``accuracy_level=4``). Defaults to
            "qgemm" (the faster one where measured).
        ort_int8_special_bypass (bool): with the "qgemm" kernel, the special tokens of the ViT
            and aggregator blocks' Linears bypass the int8 GEMM (exact INT4 MatMul for them; the
            token rule of docs/method.md). Defaults to True.
        ort_int4 (str): ``--target ort``: INT4 as "matmulnbits" or left as "qdq" (ORT fuses it at
            load time, following the session's ``session.qdq_matmulnbits_accuracy_level``).
            Defaults to "matmulnbits".
        trt_plugin (bool): ``--target trt``: INT4 GEMMs become W4A16 plugin nodes. Defaults to False.
        conv_precision (str): "fp32" or "fp16": DPT conv weights rounded to and stored in fp16
            (computed in fp32; the model is rounded in place, see :mod:`.convs`). Defaults to "fp32".
        calibration_graph (bool): the calibration variant of the token rule: activations stay float
            (no activation quantizers) and every layer of ``recipe.token_filter["layers"]`` gets an
            extra output ``<layer>.calib_input`` (special rows replaced by ``comp.<layer>``, see
            the ``drop-filtered-tokens`` pass). ``--target ort`` only. Defaults to False.
        external_data (str): "auto" (external above ~1.8 GB), "always" or "never". Defaults to "auto".
        dense_loop (bool): run the DPT heads frame by frame in a Loop (``--target ort``; see
            ``passes/loop_dense_heads.py``). Off by default: on ONNX Runtime 1.32 it *raised*
            VGGT-1B's peak RSS at 2 frames (W4A16 2.00 -> 2.69 GB). Defaults to False.
        free_weights (bool): write the float Linear weights before tracing and release every
            Linear weight from ``model`` (the trace never reads them; VGGT-1B's peak memory drops
            by the 4.5 GB they take). The model is unusable afterwards. Defaults to False.

    Returns:
        ExportResult.

    Raises:
        QvggtError: bad size or options, a recipe made for another model.
    """
    start = time.perf_counter()
    cfg = model.cfg
    out = Path(out)
    if target not in TARGETS:
        raise QvggtError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if ort_int4 not in ORT_INT4_FORMS:
        raise QvggtError(f"--ort-int4 must be one of {', '.join(ORT_INT4_FORMS)}, got {ort_int4!r}")
    if ort_int8_kernel not in ORT_INT8_KERNELS:
        raise QvggtError(f"--ort-int8-kernel must be one of {', '.join(ORT_INT8_KERNELS)}, got {ort_int8_kernel!r}")
    if ort_int8_activations and ort_int4 != "matmulnbits":
        raise QvggtError("--ort-int8-activations needs --ort-int4 matmulnbits (a QDQ graph follows the session's "
                         "accuracy level instead)")
    if target != "ort" and (ort_int8_activations or ort_int4 != "matmulnbits"):
        raise QvggtError("--ort-int8-activations/--ort-int4 apply to --target ort only")
    if target != "trt" and trt_plugin:
        raise QvggtError("--trt-plugin applies to --target trt only")
    if dense_loop and target != "ort":
        raise QvggtError("dense_loop is for --target ort (TensorRT plans the batched heads itself; "
                         "its lint and memory model read the main graph only)")
    if calibration_graph and (target != "ort" or recipe is None):
        raise QvggtError("--calibration-graph needs --target ort and a --recipe (its token_filter layers)")
    if external_data not in ("auto", "always", "never"):
        raise QvggtError(f"external_data must be auto, always or never, got {external_data!r}")
    if frames < 1:
        raise QvggtError(f"--frames must be at least 1, got {frames}")
    if height <= 0 or width <= 0 or height % cfg.patch_size or width % cfg.patch_size:
        raise QvggtError(f"--height/--width {height}x{width} must be positive multiples of the patch size "
                         f"{cfg.patch_size}")
    model.eval()
    phase = _Phases()
    if recipe is not None:
        from qvggt_deploy.quant.recipe import apply_smoothing, check_compatible

        check_compatible(recipe, model)
        apply_smoothing(model, recipe)
        phase("recipe")
    conv_names = round_conv_weights(model, conv_precision)
    plan = plan_from_recipe(model, recipe, float_precision) if recipe is not None else plan_from_model(model, float_precision)
    if calibration_graph:  # activations are what a calibrator observes: keep them float
        for spec in plan.values():
            spec.abits = spec.act_granularity = spec.act_scale = None
            spec.special_bypass = False
    nonlinear = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                    if not n.startswith("track_head") and n.rsplit(".", 1)[0] not in plan)
    estimate = _plan_bytes(plan) + nonlinear
    external = {"auto": estimate > EXTERNAL_THRESHOLD, "always": True, "never": False}[external_data]
    out.parent.mkdir(parents=True, exist_ok=True)
    store = TensorStore(out, external=external)
    try:
        constants = None
        if free_weights:
            constants = prewrite_float_weights(plan, store)
            for name in plan:
                model.get_submodule(name).weight = None
            phase("write-float-weights")
        logger.info("tracing %s at %dx%d (%d frames, dynamic)", cfg.name, height, width, frames)
        proto = trace_to_onnx(model, height, width, frames, dense_marker=dense_loop)
        body = None
        if dense_loop:
            body = gs.import_onnx(onnx.version_converter.convert_version(trace_dense_body(model, height, width),
                                                                          EXPORT_OPSET))
            body_passes = PassRunner(body)
            body_passes.run("fold-constants")
            body_passes.run("dedupe-constants")
            if conv_names:
                body_passes.run("fp16-conv-weights", prefixes=tuple(f"model.{root}." for root in CONV_ROOTS), store=store)
            body = body_passes.run("cleanup")
        phase("trace")
        proto = onnx.version_converter.convert_version(proto, EXPORT_OPSET)
        phase(f"opset-{EXPORT_OPSET}")
        graph = gs.import_onnx(proto)
        del proto
        runner = PassRunner(graph, on_pass=phase)
        runner.run("fold-constants")
        runner.run("dedupe-constants")
        if conv_names and not dense_loop:
            runner.run("fp16-conv-weights", prefixes=tuple(f"model.{root}." for root in CONV_ROOTS), store=store)
        if dense_loop:
            runner.run("loop-dense-heads", body=body)
        elif target == "ort":
            runner.run("band-upsampled-convs", bands=DENSE_BANDS)
        runner.run("lower-attention", fused="ort" if target == "ort" else None)
        runner.run("lower-linears", plan=plan, target=target, store=store, constants=constants)
        bypass = [name for name, s in plan.items() if s.abits and s.special_bypass]
        tpf = tokens_per_frame(cfg, height, width)
        if bypass:
            runner.run("bypass-special-tokens", tokens_per_frame=tpf, num_special=cfg.patch_start_idx, layers=bypass)
        if calibration_graph:
            comp = {name: recipe.compensation(name).numpy() for name in recipe.token_filter.get("layers", [])
                    if recipe.compensation(name) is not None}
            runner.run("drop-filtered-tokens", compensation=comp, tokens_per_frame=tpf, num_special=cfg.patch_start_idx)
        qgemm = ort_int8_activations and ort_int8_kernel == "qgemm"
        accuracy = 4 if ort_int8_activations and not qgemm else 0
        has_int4 = any(spec.wbits == 4 for spec in plan.values())
        if target == "ort" and qgemm and has_int4:
            special = [n for n in token_rule_layers(model) if n in plan and plan[n].wbits == 4] \
                if ort_int8_special_bypass else []
            runner.run("int4-to-qgemm", store=store, special_layers=special, tokens_per_frame=tpf,
                       num_special=cfg.patch_start_idx)
        if target == "ort" and ort_int4 == "matmulnbits" and has_int4:  # what qgemm left (fp16 layers)
            runner.run("int4-to-matmulnbits", accuracy_level=accuracy, store=store)
        if trt_plugin and has_int4:
            runner.run("w4a16-plugin", store=store)
        runner.run("cleanup")
        graph, applied = runner.graph, runner.names
        _set_io(graph, height, width)
        graph.name = f"vggt_{cfg.name}_{target}"
        model_proto = gs.export_onnx(graph, opset_imports=_opset_imports(graph))
        op_counts = dict(Counter(n.op for n in graph.nodes).most_common())
        del graph, runner
        metadata = {
            "format": FORMAT,
            "preset": cfg.name,
            "target": target,
            "height": str(height),
            "width": str(width),
            "tokens_per_frame": str(tpf),
            "num_special": str(cfg.patch_start_idx),
            "float_precision": float_precision,
            "conv_precision": conv_precision,
            "dense_loop": str(bool(dense_loop)).lower(),
            "recipe_digest": recipe.digest if recipe is not None else "none",
            "recipe_method": json.dumps(recipe.method, sort_keys=True) if recipe is not None else "none",
            "passes": ",".join(applied),
            "calibration_graph": str(bool(calibration_graph)).lower(),
            "plan": json.dumps({k: v.precision for k, v in plan.items()}),
            "tool": f"qvggt-deploy {__version__}; torch {torch.__version__} TorchScript exporter, "
                    f"opset {TRACE_OPSET} -> {EXPORT_OPSET}",
        }
        if target == "ort":
            metadata["ort_int4"] = ort_int4
            metadata["ort_accuracy_level"] = str(accuracy) if ort_int4 == "matmulnbits" else "session"
            metadata["ort_int8_kernel"] = ort_int8_kernel if ort_int8_activations else "none"
            metadata["ort_compute"] = ort_compute(ort_int8_activations, ort_int8_kernel,
                                                  ort_int8_special_bypass and qgemm and has_int4)
        onnx.helper.set_model_props(model_proto, {META + k: v for k, v in metadata.items()})
        model_proto.producer_name = "qvggt-deploy"
        model_proto.producer_version = __version__
        model_proto.doc_string = (f"VGGT ({cfg.name}) at {height}x{width}, dynamic frames; target {target}; "
                                  f"recipe {metadata['recipe_digest']}")
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


def read_metadata(path) -> Dict[str, str]:
    """The ``qvggt.*`` metadata of an exported file (without loading its weights)."""
    path = Path(path)
    if not path.is_file():
        raise QvggtError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own types
        raise QvggtError(f"{path}: not a readable ONNX file ({exc})") from exc
    return {p.key[len(META):]: p.value for p in model.metadata_props if p.key.startswith(META)}
