"""``qvggt lint``: what TensorRT 10.x rejects or silently runs in FP32, found before a build.

Rules (each finding names the node):

| rule | severity | what |
|---|---|---|
| ``opset`` | error | INT4 tensors with a default-domain opset below 21 |
| ``int4-weights`` | error | INT4 ``DequantizeLinear`` on a run-time tensor, uint4, non-zero or non-constant zero point, non-constant or non-positive scales, not 2-D, bad block layout |
| ``int8-blocked`` | error (trt) | INT8 block quantization (TensorRT 10.3 block-quantizes INT4 only) |
| ``dynamic-scale`` | error (trt) | ``QuantizeLinear`` with a run-time scale (per-token quantization) |
| ``qdq-mismatch`` | error | a Q -> DQ pair whose scales or zero points differ |
| ``zero-point`` | error (trt) | Q/DQ with a non-zero zero point |
| ``unsupported-op`` | error | an op TensorRT's ONNX parser lacks (trt), an unlowered export marker, a custom domain the target cannot run |
| ``plugin`` | error (trt) | a W4A16 plugin node that breaks its contract (``ops/plugin_contract.py``) |
| ``precision`` | error (trt) | a MatMul fed by DequantizeLinear whose other input has another type, or a layer the plan puts in fp16 whose MatMul input is not Cast to fp16 |
| ``fp32-islands`` | warning (trt) | LayerNormalization/Softmax on fp16 inputs (the plan keeps them in FP32) |
| ``matmulnbits`` | error (ort) | MatMulNBits attributes that do not fit its weights |

The file is read without its external data; only small tensors (zero points, scales) are read
from the ``.data`` file when needed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import

onnx = lazy_import("onnx")

INT4, UINT4, INT8, FLOAT, FLOAT16 = 22, 21, 3, 1, 10
QUANT_PRECISIONS = ("fp16", "w4a16", "w8a16", "w8a8", "w4a8")
MAX_READ_BYTES = 64 << 20  # small tensors only (scales, zero points)

# ONNX ops TensorRT 10's parser supports (onnx-tensorrt docs/operators.md, 10.x).
TRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
ORT_CUSTOM_DOMAINS = ("com.microsoft",)
TARGETS = ("trt", "ort")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    rule: str
    node: str
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper()} [{self.rule}] node '{self.node}' ({self.op}): {self.message}"


@dataclass
class LintResult:
    """Findings of one file; truthy when there is no error."""

    path: str
    target: str
    findings: List[Finding] = field(default_factory=list)
    nodes: int = 0

    @property
    def errors(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> List[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def __bool__(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"path": self.path, "target": self.target, "nodes": self.nodes, "passed": bool(self),
                "errors": [vars(f) for f in self.errors], "warnings": [vars(f) for f in self.warnings]}


class _Graph:
    """Lookups over a ModelProto: constants, producers, consumers, element types."""

    def __init__(self, model, base_dir: Optional[Path]):
        self.model, self.base_dir = model, base_dir
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.const_nodes = {}
        self.producer = {}
        self.consumers: Dict[str, list] = {}
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for a in node.attribute:
                    if a.name == "value":
                        self.const_nodes[node.output[0]] = a.t
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self.types = {t.name: t.data_type for t in g.initializer}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.tensor_type.elem_type:
                self.types[vi.name] = vi.type.tensor_type.elem_type
        try:
            light = onnx.ModelProto()
            light.CopyFrom(model)
            for t in light.graph.initializer:  # types and shapes are all inference needs
                t.ClearField("raw_data")
                del t.external_data[:]
                t.data_location = onnx.TensorProto.DEFAULT
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False)
            for vi in inferred.graph.value_info:
                if vi.type.tensor_type.elem_type:
                    self.types.setdefault(vi.name, vi.type.tensor_type.elem_type)
        except Exception:  # inference is a bonus: rules needing a type skip unknown ones
            pass

    def constant(self, name: str):
        return self.inits.get(name) or self.const_nodes.get(name)

    def dtype(self, name: str) -> Optional[int]:
        t = self.constant(name)
        return t.data_type if t is not None else self.types.get(name)

    def values(self, name: str) -> Optional[np.ndarray]:
        """Values of a small constant (None when not constant, or too large to read here)."""
        from qvggt_deploy.graph.tensors import read_array

        t = self.constant(name)
        if t is None:
            return None
        count = int(np.prod(t.dims)) if len(t.dims) else 1
        if count * 4 > MAX_READ_BYTES:
            return None
        try:
            return np.asarray(read_array(t, self.base_dir))
        except QvggtError:
            return None


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def lint_model(model, *, target: str = "trt", base_dir=None, metadata: Optional[Dict[str, str]] = None) -> LintResult:
    """Lint a ModelProto for ``target`` ("trt" or "ort"); see the module docstring for the rules."""
    if target not in TARGETS:
        raise QvggtError(f"lint target must be one of {', '.join(TARGETS)}, got {target!r}")
    g = _Graph(model, Path(base_dir) if base_dir else None)
    res = LintResult(path="", target=target, nodes=len(model.graph.node))
    add = lambda sev, rule, node, msg: res.findings.append(Finding(sev, rule, node.name or node.output[0], node.op_type, msg))  # noqa: E731
    trt = target == "trt"
    opset = _opset(model)

    for node in model.graph.node:
        op, dom = node.op_type, node.domain
        if dom == "qvggt":
            add("error", "unsupported-op", node, "export marker left in the graph (not lowered)")
            continue
        if dom not in ("", "ai.onnx"):
            if trt:
                from qvggt_deploy.ops import plugin_contract as contract

                if op == contract.OP_TYPE:
                    try:
                        contract.check_node_attrs(_attrs(node), node.name)
                    except QvggtError as exc:
                        add("error", "plugin", node, str(exc))
                else:
                    add("error", "unsupported-op", node, f"custom op of domain '{dom}' is neither a TensorRT layer "
                        f"nor the W4A16 plugin ({contract.OP_TYPE}); export with --target trt")
            elif dom not in ORT_CUSTOM_DOMAINS:
                add("error", "unsupported-op", node, f"custom domain '{dom}' is not an ONNX Runtime contrib domain")
            elif op == "MatMulNBits":
                _lint_matmulnbits(g, node, add, metadata)
            continue
        if trt and op not in TRT_OPS:
            add("error", "unsupported-op", node, "TensorRT's ONNX parser has no importer for this op")
        if op == "DequantizeLinear":
            _lint_dequantize(g, node, add, trt, opset)
        elif op == "QuantizeLinear":
            _lint_quantize(g, node, add, trt)
        elif op == "MatMul" and trt:
            _lint_matmul_types(g, node, add)
        elif op in ("LayerNormalization", "Softmax") and trt and g.dtype(node.input[0]) == FLOAT16:
            add("warning", "fp32-islands", node, "runs in fp16; the precision plan keeps LayerNorm and softmax in FP32")
    if trt and metadata and metadata.get("plan"):
        _lint_plan(g, model, json.loads(metadata["plan"]), add)
    return res


def _lint_dequantize(g: _Graph, node, add, trt: bool, opset: int) -> None:
    x = node.input[0]
    dtype = g.dtype(x)
    attrs = _attrs(node)
    scale = node.input[1] if len(node.input) > 1 else ""
    zp = node.input[2] if len(node.input) > 2 else ""
    if dtype in (INT4, UINT4):
        if opset < 21:
            add("error", "opset", node, f"INT4 DequantizeLinear needs opset >= 21 (blocked), the model has {opset}")
        if g.constant(x) is None:
            add("error", "int4-weights", node, f"INT4 input '{x}' is computed at run time; TensorRT needs INT4 weights "
                "as constant initializers")
        if dtype == UINT4 and trt:
            add("error", "int4-weights", node, "uint4 weights: TensorRT's INT4 is signed (symmetric, zero point 0)")
        if zp and trt:
            zv = g.values(zp)
            if zv is None or np.any(zv != 0):
                add("error", "int4-weights", node, f"zero point '{zp}' is not a zero constant: TensorRT INT4 is "
                    "symmetric")
        if g.constant(scale) is None:
            add("error", "int4-weights", node, f"scale '{scale}' is not a constant")
        else:
            _check_block_layout(g, node, x, scale, attrs, add, trt)
            sv = g.values(scale)
            if sv is not None and np.any(~(sv.astype(np.float32) > 0)):
                add("error", "int4-weights", node, f"scale '{scale}' has values <= 0 (TensorRT needs positive scales)")
    elif dtype == INT8 and g.constant(x) is not None:
        if trt and attrs.get("block_size", 0):
            add("error", "int8-blocked", node, "INT8 block quantization; TensorRT 10.3 block-quantizes INT4 only "
                "(use per-channel INT8: group = in_features)")
        if zp:
            zv = g.values(zp)
            if trt and (zv is None or np.any(zv != 0)):
                add("error", "zero-point", node, f"zero point '{zp}' must be a zero constant for TensorRT")


def _check_block_layout(g: _Graph, node, x: str, scale: str, attrs: dict, add, trt: bool) -> None:
    w, s = g.constant(x), g.constant(scale)
    if w is None or s is None:
        return
    wshape, sshape = list(w.dims), list(s.dims)
    block = int(attrs.get("block_size", 0))
    if len(wshape) != 2 and trt:
        add("error", "int4-weights", node, f"INT4 weights of rank {len(wshape)}; TensorRT needs 2-D weights")
        return
    if not block:
        if trt:
            add("warning", "int4-weights", node, "INT4 without block_size; TensorRT's INT4 weight-only path is block "
                "quantization")
        return
    axis = int(attrs.get("axis", 1)) % max(len(wshape), 1)
    if trt and axis < len(wshape) - 2:
        add("error", "int4-weights", node, f"blocking axis {axis}: TensorRT blocks only the last two dimensions")
    feeds_b = any(c.op_type == "MatMul" and len(c.input) > 1 and c.input[1] == node.output[0]
                  for c in g.consumers.get(node.output[0], []))
    if feeds_b and len(wshape) == 2 and axis != 0:
        add("error", "int4-weights", node, f"INT4 weight [K, N] of a MatMul blocked on axis {axis}; the W4A16 GEMM "
            "(TensorRT's weight-only path, MatMulNBits, our plugin) needs blocks along K (axis 0)")
    want = list(wshape)
    want[axis] = -(-wshape[axis] // block)
    if sshape != want:
        add("error", "int4-weights", node, f"scale shape {sshape} does not match weights {wshape} blocked by {block} "
            f"on axis {axis} (expected {want})")


def _lint_quantize(g: _Graph, node, add, trt: bool) -> None:
    scale = node.input[1]
    zp = node.input[2] if len(node.input) > 2 else ""
    if trt and g.constant(scale) is None:
        add("error", "dynamic-scale", node, f"scale '{scale}' is computed at run time; TensorRT needs build-time "
            "constant INT8 scales (per-token activation quantization cannot be deployed there)")
    if zp and trt:
        zv = g.values(zp)
        if zv is None or np.any(zv != 0):
            add("error", "zero-point", node, f"zero point '{zp}' must be a zero constant for TensorRT")
    for dq in g.consumers.get(node.output[0], []):
        if dq.op_type != "DequantizeLinear":
            continue
        for i, what in ((1, "scale"), (2, "zero point")):
            a = node.input[i] if len(node.input) > i else ""
            b = dq.input[i] if len(dq.input) > i else ""
            if a == b:
                continue
            va, vb = g.values(a) if a else None, g.values(b) if b else None
            same = va is not None and vb is not None and va.shape == vb.shape and np.array_equal(va, vb)
            if not same and (a or b) and not (what == "zero point" and _all_zero(va, vb, a, b)):
                add("error", "qdq-mismatch", dq, f"{what} '{b or '-'}' differs from its QuantizeLinear '{node.name}' "
                    f"{what} '{a or '-'}'")


def _all_zero(va, vb, a: str, b: str) -> bool:
    zero = lambda v, name: (not name) or (v is not None and not np.any(v))  # noqa: E731
    return zero(va, a) and zero(vb, b)


def _lint_matmul_types(g: _Graph, node, add) -> None:
    for i in (0, 1):
        prod = g.producer.get(node.input[i])
        if prod is None or prod.op_type != "DequantizeLinear":
            continue
        other = node.input[1 - i]
        t_dq, t_other = g.dtype(node.input[i]), g.dtype(other)
        if t_dq and t_other and t_dq != t_other:
            names = {FLOAT: "fp32", FLOAT16: "fp16"}
            add("error", "precision", node, f"MatMul fed by DequantizeLinear '{prod.name}' ({names.get(t_dq, t_dq)}) with "
                f"a {names.get(t_other, t_other)} activation '{other}': strongly typed TensorRT rejects the mix; "
                f"the precision plan needs a Cast of the activation")


def _lint_plan(g: _Graph, model, plan: Dict[str, str], add) -> None:
    by_layer: Dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type in ("MatMul",) or node.domain not in ("", "ai.onnx"):
            layer = (node.name or "").split("/", 1)[0]
            if layer in plan:
                by_layer.setdefault(layer, []).append(node)
    for layer, precision in plan.items():
        if precision not in QUANT_PRECISIONS:
            continue
        for node in by_layer.get(layer, []):
            x = node.input[0]
            if g.dtype(x) == FLOAT16:
                continue
            src = g.producer.get(x)
            while src is not None and src.op_type in ("DequantizeLinear", "QuantizeLinear", "Where"):
                src = g.producer.get(src.input[0] if src.op_type != "Where" else src.input[1])
            cast_fp16 = src is not None and src.op_type == "Cast" and _attrs(src).get("to") == FLOAT16
            if not cast_fp16:
                add("error", "precision", node, f"layer {layer} is {precision} in the plan but its input '{x}' is not "
                    "Cast to fp16: TensorRT would run this GEMM in fp32")


def _lint_matmulnbits(g: _Graph, node, add, metadata) -> None:
    a = _attrs(node)
    K, N, bits, block = a.get("K"), a.get("N"), a.get("bits", 4), a.get("block_size")
    if None in (K, N, block) or bits != 4 or block < 16 or block & (block - 1):
        add("error", "matmulnbits", node, f"attributes K={K} N={N} bits={bits} block_size={block}: need K, N, "
            "bits 4 and a power-of-two block_size >= 16")
        return
    blocks = -(-K // block)
    b = g.constant(node.input[1])
    if b is None:
        add("error", "matmulnbits", node, f"B '{node.input[1]}' is not a constant")
    elif list(b.dims) != [N, blocks, block // 2] or b.data_type != 2:
        add("error", "matmulnbits", node, f"B is {list(b.dims)} (type {b.data_type}), expected uint8 [{N}, {blocks}, {block // 2}]")
    s = g.constant(node.input[2])
    if s is None or int(np.prod(s.dims)) != N * blocks:
        add("error", "matmulnbits", node, f"scales '{node.input[2]}' must be a constant of N * K/block_size = {N * blocks} values")
    level = int(a.get("accuracy_level", 0))
    want = (metadata or {}).get("ort_accuracy_level")
    if want not in (None, "session") and str(level) != want:
        add("warning", "matmulnbits", node, f"accuracy_level {level}, the export metadata says {want}")


def lint_file(path, target: Optional[str] = None) -> LintResult:
    """Lint an exported file; ``target`` defaults to the file's ``qvggt.target`` metadata, else "trt"."""
    from qvggt_deploy.export.validate import load_checked

    path = Path(path)
    model, metadata = load_checked(path)  # an empty graph or missing external data never passes
    target = target or metadata.get("target", "trt")
    result = lint_model(model, target=target, base_dir=path.parent, metadata=metadata)
    result.path = str(path)
    return result
