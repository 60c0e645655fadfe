"""The W4A16 GEMM node contract: ONNX graph rewrite <-> TensorRT plugin <-> engine builder.

Documented once, here; ``kernels/trt_plugin/qvggt_plugin_contract.h`` mirrors the constants
(``tests/kernels/test_plugin_contract.py`` checks they agree).

Node (one per quantised Linear, replacing its MatMul/Gemm (+ Add)):

- ``op_type`` :data:`OP_TYPE` = the TensorRT plugin name; ``domain`` :data:`ONNX_DOMAIN`.
  TensorRT's ONNX parser maps an op it does not know to the plugin creator of that name, with
  version and namespace from the string attributes :data:`ONNX_ATTR_PLUGIN_VERSION` and
  :data:`ONNX_ATTR_PLUGIN_NAMESPACE` (defaults "1" and ""); it ignores the domain, which only
  keeps the op out of the default ONNX domain for checkers and ONNX Runtime.
- int attributes (the plugin's fields; the parser passes INT attributes as ``kINT32``):
  :data:`ATTRIBUTES`.
- inputs, in this order (:data:`INPUTS`): ``x`` fp16 ``[..., K]`` (any leading dims; M is
  their product), ``qweight`` int32 ``[K/64, 8*N]`` and ``scales`` fp16 ``[K/group, N]`` in the
  kernel's device layout (``kernels/w4a16_gemm.cu``, LAYOUT block; produced by
  :func:`make_plugin_node`), and ``bias`` fp16 ``[N]`` iff ``has_bias == 1``. The weights are
  ordinary constant initializers: the parser turns them into constant layers feeding the
  plugin, TensorRT stores them in the engine and hands the plugin device pointers, so the
  plugin owns no weight memory and serialises only its four ints. (Plugin fields could carry
  the weights too, but then the plugin would have to upload and serialise them itself.)
- output ``y`` fp16 ``[..., N]``.

Types: x and y must be fp16 in the graph (put Cast nodes around the plugin when the model is
fp32) and the engine built strongly typed or with FP16 enabled; the plugin offers only FP16
linear formats for x/scales/bias/y and INT32 for qweight.
Shapes: K % 64 == 0, N % 16 == 0, group % 32 == 0 dividing K (:data:`K_MULTIPLE`,
:data:`N_MULTIPLE`, :data:`GROUP_MULTIPLE`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.lazy import lazy_import
from qvggt_deploy.ops.layout import GROUP_MULTIPLE, K_CHUNK, N_BLOCK, kernel_shape_error, repack_for_kernel

onnx = lazy_import("onnx")

OP_TYPE = "QvggtW4A16Gemm"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
ONNX_DOMAIN = "trt.plugins"

ATTR_GROUP_SIZE = "group_size"
ATTR_IN_FEATURES = "in_features"
ATTR_OUT_FEATURES = "out_features"
ATTR_HAS_BIAS = "has_bias"
ONNX_ATTR_PLUGIN_VERSION = "plugin_version"
ONNX_ATTR_PLUGIN_NAMESPACE = "plugin_namespace"

ATTRIBUTES: Dict[str, str] = {
    ATTR_GROUP_SIZE: "input channels per fp16 scale (32, 64, 128, or K for per-channel)",
    ATTR_IN_FEATURES: "K, the Linear's in_features (last dim of x)",
    ATTR_OUT_FEATURES: "N, the Linear's out_features (last dim of y)",
    ATTR_HAS_BIAS: "1 if input 3 (bias) is present, else 0",
}

INPUT_X = 0
INPUT_QWEIGHT = 1
INPUT_SCALES = 2
INPUT_BIAS = 3
NUM_OUTPUTS = 1

K_MULTIPLE = K_CHUNK
N_MULTIPLE = N_BLOCK


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: str
    meaning: str


INPUTS: Tuple[TensorSpec, ...] = (
    TensorSpec("x", "float16", "[..., K]", "activations; M = product of the leading dims"),
    TensorSpec("qweight", "int32", "[K/64, 8*N]", "INT4 weights, kernel device layout"),
    TensorSpec("scales", "float16", "[K/group, N]", "group scales, transposed"),
    TensorSpec("bias", "float16", "[N]", "only when has_bias == 1"),
)
OUTPUT = TensorSpec("y", "float16", "[..., N]", "x @ W^T + bias")


@dataclass
class PluginNode:
    """Everything an exporter needs to emit one plugin node, framework-neutral.

    ``inputs``/``outputs`` are tensor names in contract order; ``constants`` maps the names of
    the weight inputs to their values (numpy), to be stored as initializers (or
    ``onnx_graphsurgeon.Constant``); ``attrs`` are the node attributes.
    """

    name: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Union[int, str]]
    constants: Dict[str, np.ndarray] = field(default_factory=dict)
    op_type: str = OP_TYPE
    domain: str = ONNX_DOMAIN

    def to_onnx(self):
        """``(onnx.NodeProto, [onnx.TensorProto initializers])``; needs the onnx package."""
        node = onnx.helper.make_node(self.op_type, self.inputs, self.outputs, name=self.name,
                                     domain=self.domain, **self.attrs)
        initializers = [onnx.numpy_helper.from_array(value, name) for name, value in self.constants.items()]
        return node, initializers


def _as_tensor(value, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    raise QvggtError(f"make_plugin_node: {what} must be a numpy array or torch tensor, got {type(value).__name__}")


def make_plugin_node(name: str, x: str, y: str, qweight, scales, group: int, bias=None) -> PluginNode:
    """Build the plugin node for one Linear from its canonical INT4 weights.

    Args:
        name (str): node name; the weight initializers are ``<name>.qweight``, ``.scales``,
            ``.bias``.
        x (str): name of the fp16 input tensor ``[..., K]``.
        y (str): name of the fp16 output tensor ``[..., N]``.
        qweight: canonical uint8 ``[N, K/2]`` (``qvggt_deploy/quant/quantizer.py``), numpy or torch.
        scales: fp16 ``[N, K/group]``.
        group (int): input channels per scale.
        bias (optional): ``[N]``, stored as fp16. Defaults to None.

    Returns:
        :class:`PluginNode`.
    """
    qweight_t, scales_t = _as_tensor(qweight, "qweight"), _as_tensor(scales, "scales")
    if qweight_t.dtype != torch.uint8 or qweight_t.dim() != 2:
        raise QvggtError(f"make_plugin_node({name}): qweight must be uint8 [N, K/2], got {qweight_t.dtype} "
                         f"{tuple(qweight_t.shape)}")
    n, k = qweight_t.shape[0], qweight_t.shape[1] * 2
    reason = kernel_shape_error(n, k, group)
    if reason is not None:
        raise QvggtError(f"make_plugin_node({name}): {reason}")
    qweight_dev, scales_dev = repack_for_kernel(qweight_t, scales_t.to(torch.float16), group)
    constants: Dict[str, np.ndarray] = {f"{name}.qweight": qweight_dev.numpy(),
                                        f"{name}.scales": scales_dev.numpy()}
    inputs = [x, f"{name}.qweight", f"{name}.scales"]
    if bias is not None:
        bias_t = _as_tensor(bias, "bias")
        if tuple(bias_t.shape) != (n,):
            raise QvggtError(f"make_plugin_node({name}): bias shape {tuple(bias_t.shape)} != ({n},)")
        constants[f"{name}.bias"] = bias_t.to(torch.float16).numpy()
        inputs.append(f"{name}.bias")
    attrs: Dict[str, Union[int, str]] = {
        ATTR_GROUP_SIZE: int(group), ATTR_IN_FEATURES: int(k), ATTR_OUT_FEATURES: int(n),
        ATTR_HAS_BIAS: int(bias is not None),
        ONNX_ATTR_PLUGIN_VERSION: PLUGIN_VERSION, ONNX_ATTR_PLUGIN_NAMESPACE: PLUGIN_NAMESPACE,
    }
    return PluginNode(name=name, inputs=inputs, outputs=[y], attrs=attrs, constants=constants)


def check_node_attrs(attrs: Dict[str, Union[int, str]], node_name: Optional[str] = None) -> None:
    """Raise :class:`QvggtError` unless ``attrs`` hold a valid field set (what the plugin's
    creator checks), e.g. for an engine builder validating a graph before TensorRT sees it."""
    where = f"node {node_name!r}: " if node_name else ""
    missing = [a for a in ATTRIBUTES if a not in attrs]
    if missing:
        raise QvggtError(f"{where}{OP_TYPE} lacks attribute(s) {', '.join(missing)}")
    reason = kernel_shape_error(int(attrs[ATTR_OUT_FEATURES]), int(attrs[ATTR_IN_FEATURES]),
                                int(attrs[ATTR_GROUP_SIZE]))
    if reason is not None:
        raise QvggtError(f"{where}{reason}")
    if int(attrs[ATTR_HAS_BIAS]) not in (0, 1):
        raise QvggtError(f"{where}{ATTR_HAS_BIAS} must be 0 or 1, got {attrs[ATTR_HAS_BIAS]}")


__all__ = ["OP_TYPE", "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "ONNX_DOMAIN", "ATTRIBUTES", "INPUTS", "OUTPUT",
           "INPUT_X", "INPUT_QWEIGHT", "INPUT_SCALES", "INPUT_BIAS", "NUM_OUTPUTS", "K_MULTIPLE", "N_MULTIPLE",
           "GROUP_MULTIPLE", "PluginNode", "make_plugin_node", "check_node_attrs"]
