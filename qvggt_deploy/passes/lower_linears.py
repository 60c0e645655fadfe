"""``lower-linears``: lower every ``qvggt.Linear`` marker into ONNX ops for one precision plan.

The plan (:class:`LinearLowering` per layer) is read from the model or the recipe by
:mod:`qvggt_deploy.export.qdq`, so the graph computes exactly what
:class:`~qvggt_deploy.quant.fake.QuantLinear` computes. Per layer, with ``x`` the fp32 input:

| precision | ``--target ort`` (exact emulation, fp32 math) | ``--target trt`` (strongly typed) |
|---|---|---|
| fp32 | ``MatMul(x, W) + b`` | same |
| fp16 | x and y rounded through fp16 Casts, W stored fp16, fp32 MatMul | ``Cast(x, fp16)``, fp16 MatMul and bias, ``Cast(y, fp32)`` |
| w4a16, w8a16 | ``MatMul(x, DQ(q, s_fp32)) + b`` (INT4 later -> MatMulNBits) | ``Cast(x, fp16)``, ``MatMul(x16, DQ(q, s_fp16))``, ``Cast(y, fp32)`` |
| w8a8, w4a8 | input ``Q/DQ`` (INT8, static per-tensor or dynamic per-token), then as above | same, in fp16 |

Weights are stored ``[K, N]`` (MatMul's B): ``<layer>.weight`` (float), ``<layer>.qweight`` (INT4 or
INT8), ``<layer>.scales`` (``[K/g, N]`` blocked along K, axis 0, ``block_size = g``; INT8 with
g = K: 1-D ``[N]``, axis 1), ``<layer>.bias``. Zero points are absent (symmetric; TensorRT needs zero),
except the explicit int8 zero of activation quantizers, which fixes the Q output type. Every
layer's constants are created once, so a layer called several times (the camera trunk's
iterations) shares one initializer per weight.
Node names start with ``<layer>/`` (the activation quantizer is ``<layer>/input_quantizer/...``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.tensors import TensorStore
from qvggt_deploy.graph.markers import LINEAR_MARKER, MARKER_DOMAIN
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.passes.registry import register_pass
from qvggt_deploy.quant.config import get_precision
from qvggt_deploy.quant.quantizer import SCALE_FLOOR, qmax

gs = lazy_import("onnx_graphsurgeon")

TARGETS = ("ort", "trt")
FP32, FP16, INT8 = np.float32, np.float16, np.int8
ONNX_TYPE = {FP32: 1, FP16: 10}


@dataclass
class LinearLowering:
    """Everything the lowering needs about one Linear (arrays are views, not copies)."""

    precision: str
    in_features: int
    out_features: int
    weight: Optional[np.ndarray] = None  # fp32 [N, K], float precisions
    bias: Optional[np.ndarray] = None  # fp32 [N]
    qweight: Optional[Callable[[], np.ndarray]] = None  # makes int8 values [N, K] (one layer at a time)
    scales: Optional[np.ndarray] = None  # fp32 holding fp16 values [N, K/group]
    group: Optional[int] = None
    abits: Optional[int] = None
    act_granularity: Optional[str] = None
    act_scale: Optional[float] = None
    special_bypass: bool = False

    @property
    def wbits(self) -> Optional[int]:
        return get_precision(self.precision).wbits


class _Builder:
    """Emits the nodes of one marker; names everything under ``<layer>/``."""

    def __init__(self, layer: str, call: int = 0):
        # Later calls of the same layer (camera trunk iterations) get their own node names.
        self.layer, self.nodes = layer, []
        self.prefix = layer if call == 0 else f"{layer}/call{call}"
        self._count: Dict[str, int] = {}

    def op(self, op: str, inputs: List, attrs: Optional[dict] = None, dtype=None, tag: str = ""):
        key = f"{tag}{op}"
        n = self._count.get(key, 0)
        self._count[key] = n + 1
        name = f"{self.prefix}/{tag}{op}" + (f"_{n}" if n else "")
        out = gs.Variable(f"{name}_output", dtype=dtype)
        self.nodes.append(gs.Node(op, name=name, inputs=inputs, outputs=[out], attrs=attrs or {}))
        return out

    def cast(self, x, to, tag: str = ""):
        return self.op("Cast", [x], {"to": ONNX_TYPE[to]}, dtype=to, tag=tag)


def kn(a: np.ndarray) -> np.ndarray:
    """``[N, K]`` -> ``[K, N]`` (a view; the store makes it contiguous once)."""
    return a.T


class _Weights:
    """Per-layer constants, created once and shared by every call of the layer."""

    def __init__(self, store: TensorStore):
        self.store = store
        self.cache: Dict[str, object] = {}

    def get(self, name: str, make):
        if name not in self.cache:
            self.cache[name] = make()
        return self.cache[name]


def _dq_weight(b: _Builder, w: _Weights, layer: str, spec: LinearLowering, scale_dtype):
    """``DequantizeLinear`` of the layer's integer weight ``[K, N]``; output dtype = scale dtype."""
    K, N, g = spec.in_features, spec.out_features, spec.group
    if spec.qweight is None or spec.scales is None:
        raise QvggtError(f"layer {layer}: {spec.precision} needs qweight and scales")
    if spec.wbits == 4:
        qw = w.get(f"{layer}.qweight", lambda: w.store.add_int4(f"{layer}.qweight", kn(spec.qweight())))
    else:
        qw = w.get(f"{layer}.qweight", lambda: w.store.add(f"{layer}.qweight", kn(spec.qweight()).astype(INT8)))
    suffix = "" if scale_dtype is FP32 else "_fp16"
    if g == K and spec.wbits == 8:  # per output channel (INT4 stays blocked: TensorRT's form)
        sc = w.get(f"{layer}.scales{suffix}", lambda: w.store.add(
            f"{layer}.scales{suffix}", spec.scales.reshape(N).astype(scale_dtype)))
        attrs = {"axis": 1}
    else:
        sc = w.get(f"{layer}.scales{suffix}", lambda: w.store.add(
            f"{layer}.scales{suffix}", kn(spec.scales).astype(scale_dtype)))
        attrs = {"axis": 0, "block_size": int(g)}
    return b.op("DequantizeLinear", [qw, sc], attrs, dtype=scale_dtype)


def _act_quant(b: _Builder, w: _Weights, layer: str, spec: LinearLowering, x, dtype):
    """INT8 fake-quantization of the input (Q then DQ), as ``fake_quant_activation``."""
    tag = "input_quantizer/"
    if spec.abits != 8:
        raise QvggtError(f"layer {layer}: only INT8 activations are exportable, got {spec.abits} bits")
    if spec.act_granularity == "per_tensor":
        suffix = "" if dtype is FP32 else "_fp16"
        s = w.get(f"{layer}.act_scale{suffix}", lambda: w.store.add(
            f"{layer}.act_scale{suffix}", np.array(spec.act_scale, dtype=dtype)))
        zp = w.get(f"{layer}.act_zero_point", lambda: w.store.add(f"{layer}.act_zero_point", np.array(0, INT8)))
        q = b.op("QuantizeLinear", [x, s, zp], dtype=INT8, tag=tag)
        return b.op("DequantizeLinear", [q, s, zp], dtype=dtype, tag=tag)
    if spec.act_granularity == "per_token":
        # One scale per row, computed at run time: s = max(absmax(x) / qmax, floor).
        consts = w.get(f"{MARKER_DOMAIN}.per_token.{np.dtype(dtype).name}", lambda: (
            w.store.add(f"qvggt.per_token.axes_{np.dtype(dtype).name}", np.array([-1], np.int64)),
            w.store.add(f"qvggt.per_token.qmax_{np.dtype(dtype).name}", np.array(qmax(8), dtype)),
            w.store.add(f"qvggt.per_token.floor_{np.dtype(dtype).name}", np.array(SCALE_FLOOR, dtype))))
        axes, qm, floor = consts
        a = b.op("Abs", [x], dtype=dtype, tag=tag)
        m = b.op("ReduceMax", [a, axes], {"keepdims": 1}, dtype=dtype, tag=tag)
        s = b.op("Max", [b.op("Div", [m, qm], dtype=dtype, tag=tag), floor], dtype=dtype, tag=tag)
        blocked = {"axis": -1, "block_size": int(spec.in_features)}
        q = b.op("QuantizeLinear", [x, s], {**blocked, "output_dtype": 3}, dtype=INT8, tag=tag)
        return b.op("DequantizeLinear", [q, s], blocked, dtype=dtype, tag=tag)
    raise QvggtError(f"layer {layer}: unknown activation granularity {spec.act_granularity!r}")


def _lower_one(node, spec: LinearLowering, w: _Weights, target: str, call: int = 0) -> List:
    """The nodes replacing one marker; the last one writes the marker's output tensor."""
    layer = node.attrs["layer"]
    x, y = node.inputs[0], node.outputs[0]
    b = _Builder(layer, call)
    p, store = spec.precision, w.store

    def float_weight(dtype):
        suffix = "" if dtype is FP32 else "_fp16"
        return w.get(f"{layer}.weight{suffix}", lambda: store.add(
            f"{layer}.weight{suffix}", kn(spec.weight).astype(dtype, copy=False), stream=True))

    if p == "fp32":
        t = _matmul_bias(b, w, layer, spec, x, float_weight(FP32), FP32)
    elif target == "ort" and p == "fp16":
        # Exact emulation of QuantLinear(fp16): round x, W and y through fp16, compute in fp32.
        xr = b.cast(b.cast(x, FP16, tag="input_"), FP32, tag="input_")
        yr = _matmul_bias(b, w, layer, spec, xr, b.cast(float_weight(FP16), FP32, tag="weight_"), FP32)
        t = b.cast(b.cast(yr, FP16, tag="output_"), FP32, tag="output_")
    elif target == "ort":
        xin = _act_quant(b, w, layer, spec, x, FP32) if spec.abits else x
        t = _matmul_bias(b, w, layer, spec, xin, _dq_weight(b, w, layer, spec, FP32), FP32)
    else:  # TensorRT: the layer runs in fp16, with explicit Casts at both ends.
        xh = b.cast(x, FP16, tag="input_")
        if p == "fp16":
            W = float_weight(FP16)
        else:
            if spec.abits:
                xh = _act_quant(b, w, layer, spec, xh, FP16)
            W = _dq_weight(b, w, layer, spec, FP16)
        t = b.cast(_matmul_bias(b, w, layer, spec, xh, W, FP16), FP32, tag="output_")
    last = b.nodes[-1]
    assert last.outputs[0] is t, "the final op of a lowering must come last"
    last.outputs = [y]
    return b.nodes


def _matmul_bias(b: _Builder, w: _Weights, layer: str, spec: LinearLowering, x, W, dtype):
    """``MatMul(x, W)`` plus the bias (in ``dtype``) when the layer has one."""
    mm = b.op("MatMul", [x, W], dtype=dtype)
    if spec.bias is None:
        return mm
    suffix = "" if dtype is FP32 else "_fp16"
    bias = w.get(f"{layer}.bias{suffix}", lambda: w.store.add(f"{layer}.bias{suffix}", spec.bias.astype(dtype)))
    return b.op("Add", [mm, bias], dtype=dtype)


@register_pass("lower-linears")
def lower_linears(graph, *, plan: Dict[str, LinearLowering], target: str = "ort", store: Optional[TensorStore] = None,
                  constants: Optional[Dict[str, object]] = None):
    """Replace every ``qvggt.Linear`` marker by the ops of its layer's precision (table above).

    Preconditions: markers come from :func:`qvggt_deploy.export.trace.export_view`; every
    marker's ``layer`` attribute is in ``plan``; the opset is 21 (blocked DequantizeLinear).
    Never touched: any node that is not a marker.

    Args:
        graph (gs.Graph): the traced graph, modified in place.
        plan (dict): layer name -> :class:`LinearLowering` (see :func:`qvggt_deploy.export.qdq.plan_from_model`).
        target (str): "ort" (exact fp32 emulation) or "trt" (fp16 compute, strongly typed).
            Defaults to "ort".
        store (TensorStore): where weight bytes go. Defaults to an in-memory store.
        constants (dict, optional): constants made beforehand by name (see
            :func:`qvggt_deploy.export.qdq.prewrite_float_weights`). Defaults to None.

    Returns:
        the graph.
    """
    if target not in TARGETS:
        raise QvggtError(f"unknown export target {target!r}; choose one of {', '.join(TARGETS)}")
    weights = _Weights(store or TensorStore())
    weights.cache.update(constants or {})
    markers = [n for n in graph.nodes if n.op == LINEAR_MARKER and n.domain == MARKER_DOMAIN]
    calls: Dict[str, int] = {}
    for node in markers:
        layer = node.attrs["layer"]
        if layer not in plan:
            raise QvggtError(f"node {node.name}: layer {layer} has no entry in the precision plan")
        call = calls.get(layer, 0)
        calls[layer] = call + 1
        new_nodes = _lower_one(node, plan[layer], weights, target, call)
        node.inputs.clear()
        node.outputs.clear()
        graph.nodes.extend(new_nodes)
    return graph.cleanup().toposort()
