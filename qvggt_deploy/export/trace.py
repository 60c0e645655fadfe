"""A trace-friendly view of VGGT for ONNX export: fixed H x W, dynamic frame count.

:func:`export_view` patches a model in place for the duration of a ``with`` block (everything is
restored on exit, also on error):

- every Linear (``nn.Linear`` or the fake-quantized :class:`~qvggt_deploy.quant.fake.QuantLinear`)
  becomes one marker node ``qvggt.Linear(x)`` with attributes ``layer`` (the module's qualified
  name) and ``out_features``. The weights are not traced at all: the exporter's lowering
  (:mod:`qvggt_deploy.passes.lower_linears`) writes each layer once, in the precision the plan asks for, so
  the camera trunk's four iterations share one initializer per weight;
- ``scaled_dot_product_attention`` becomes ``qvggt.Attention(q, k, v)`` (attributes
  ``num_heads``, ``head_dim``), lowered per target by the ``lower-attention`` pass;
- 2D RoPE uses constant per-frame cos/sin tables (positions depend only on H, W), the DINOv2
  positional table is resized once, and the DPT sin/cos embeddings are constants: nothing of
  this is recomputed in the graph, and no ``cartesian_prod``/bicubic-antialias/float64 op is traced.

:class:`VGGTExport` is the module to export: ``images [S, 3, H, W] -> (pose_enc, depth,
depth_conf, world_points, world_points_conf)`` (see :mod:`qvggt_deploy.graph.io`); it calls
the DPT heads on all frames at once (no Python frame-chunk loop, so S stays dynamic).
"""
from __future__ import annotations

import contextlib
import types
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.graph.markers import (
    ATTENTION_MARKER,
    DENSE_MARKER,
    LINEAR_MARKER,
    MARKER_DOMAIN,
)
from qvggt_deploy.model.heads.dpt_head import DPTHead, position_embedding
from qvggt_deploy.model.layers.rope import patch_positions
from qvggt_deploy.quant.fake import QuantLinear

DENSE_TAPS = 4  # the DPT heads read 4 aggregator layers

# layer name -> module while an export view is active (custom-op arguments are tensors, strings
# and numbers, so the op finds its module by name).
_ACTIVE: Dict[str, nn.Module] = {}


# The markers are torch custom ops, so the TorchScript tracer records one node per call and keeps
# no reference to its tensors (an autograd.Function would be a PythonOp holding every input and
# output alive: 20 GB for VGGT-1B). While exporting they return uninitialised tensors of the right
# shape: nothing downstream depends on values (the export view has no data-dependent control
# flow), and the trace skips the GEMMs, the attention and the convolutions, the bulk of the
# forward's time.
@torch.library.custom_op("qvggt::linear", mutates_args=())
def _linear_marker(x: torch.Tensor, layer: str, out_features: int) -> torch.Tensor:
    if torch.onnx.is_in_onnx_export():
        return x.new_empty(*x.shape[:-1], out_features)
    module = _ACTIVE[layer]
    return type(module).forward(module, x)


@_linear_marker.register_fake
def _(x, layer, out_features):
    return x.new_empty(*x.shape[:-1], out_features)


@torch.library.custom_op("qvggt::attention", mutates_args=())
def _attention_marker(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if torch.onnx.is_in_onnx_export():
        return q.new_empty(*q.shape[:-1], v.shape[-1])
    return F.scaled_dot_product_attention(q, k, v)


@_attention_marker.register_fake
def _(q, k, v):
    return q.new_empty(*q.shape[:-1], v.shape[-1])


@torch.library.custom_op("qvggt::conv", mutates_args=())
def _conv_marker(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: List[int],
                 padding: List[int], dilation: List[int], groups: int, transposed: bool) -> torch.Tensor:
    if torch.onnx.is_in_onnx_export():
        return x.new_empty(_conv_shape(x, weight, stride, padding, dilation, groups, transposed))
    fn = F.conv_transpose2d if transposed else F.conv2d
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return fn(x, weight, bias, **kwargs)


@_conv_marker.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, transposed):
    return x.new_empty(_conv_shape(x, weight, stride, padding, dilation, groups, transposed))


def _conv_shape(x, weight, stride, padding, dilation, groups, transposed) -> List[int]:
    k = weight.shape[2:]
    if transposed:
        spatial = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1 for i in range(2)]
        channels = weight.shape[1] * groups
    else:
        spatial = [(x.shape[2 + i] + 2 * padding[i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
        channels = weight.shape[0]
    return [x.shape[0], channels, *spatial]


def dense_taps(model: nn.Module) -> Tuple[int, ...]:
    """The aggregator layers both DPT heads read (they must agree)."""
    taps = tuple(model.depth_head.intermediate_layer_idx)
    if tuple(model.point_head.intermediate_layer_idx) != taps or len(taps) != DENSE_TAPS:
        raise QvggtError(f"export: depth and point heads must read the same {DENSE_TAPS} layers")
    return taps


def _dense_shapes(images: torch.Tensor):
    B, S, _, H, W = images.shape
    return [(B, S, H, W, 1), (B, S, H, W), (B, S, H, W, 3), (B, S, H, W)]


@torch.library.custom_op("qvggt::dense_heads", mutates_args=())
def _dense_marker(t0: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor,
                  images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if torch.onnx.is_in_onnx_export():
        return tuple(images.new_empty(s) for s in _dense_shapes(images))
    return run_dense_heads(_ACTIVE["__model__"], (t0, t1, t2, t3), images)


def run_dense_heads(model: nn.Module, taps, images: torch.Tensor):
    """Both DPT heads on the 4 tapped aggregator layers: (depth, depth_conf, points, points_conf)."""
    by_layer = dict(zip(dense_taps(model), taps))
    psi = model.aggregator.patch_start_idx
    depth, depth_conf = model.depth_head._forward_frames(by_layer, images, psi)
    points, points_conf = model.point_head._forward_frames(by_layer, images, psi)
    return depth, depth_conf, points, points_conf


@_dense_marker.register_fake
def _(t0, t1, t2, t3, images):
    return tuple(images.new_empty(s) for s in _dense_shapes(images))


def _typed_like(y, x, last: int):
    try:
        sizes = list(x.type().varyingSizes())
        y.setType(x.type().with_sizes(sizes[:-1] + [int(last)]))
    except (RuntimeError, AttributeError, TypeError):  # rank unknown: ONNX inference decides
        pass
    return y


def _register_symbolics() -> None:
    """TorchScript-exporter symbolics of the markers (idempotent)."""
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "s", "i")
    def linear(g, x, layer, out_features):
        return _typed_like(g.op(f"{MARKER_DOMAIN}::{LINEAR_MARKER}", x, layer_s=layer, out_features_i=out_features),
                           x, out_features)

    @sh.parse_args("v", "v", "v")
    def attention(g, q, k, v):
        sizes = q.type().varyingSizes()
        if sizes is None or len(sizes) != 4 or sizes[1] is None or sizes[3] is None:
            raise QvggtError(f"export: attention needs [B, heads, L, D] inputs with static heads and D, got {sizes}")
        out = g.op(f"{MARKER_DOMAIN}::{ATTENTION_MARKER}", q, k, v, num_heads_i=sizes[1], head_dim_i=sizes[3])
        return _typed_like(out, q, sizes[3])

    @sh.parse_args("v", "v", "v", "is", "is", "is", "i", "b")
    def conv(g, x, weight, bias, stride, padding, dilation, groups, transposed):
        inputs = [x, weight] + ([] if sh._is_none(bias) else [bias])
        kernel = weight.type().varyingSizes()[2:]
        return g.op("ConvTranspose" if transposed else "Conv", *inputs, kernel_shape_i=kernel, strides_i=stride,
                    pads_i=list(padding) * 2, dilations_i=dilation, group_i=groups)

    @sh.parse_args("v", "v", "v", "v", "v")
    def dense_heads(g, t0, t1, t2, t3, images):
        outs = g.op(f"{MARKER_DOMAIN}::{DENSE_MARKER}", t0, t1, t2, t3, images, outputs=4)
        try:
            b, s, _, h, w = images.type().varyingSizes()
            for out, channels in zip(outs, (1, None, 3, None)):
                out.setType(images.type().with_sizes([b, s, h, w] + ([channels] if channels else [])))
        except (RuntimeError, AttributeError, TypeError, ValueError):
            pass
        return outs

    for name, fn in (("qvggt::linear", linear), ("qvggt::attention", attention), ("qvggt::conv", conv),
                     ("qvggt::dense_heads", dense_heads)):
        register_custom_op_symbolic(name, fn, 1)


def _marked_forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.qvggt.linear(x, self._qvggt_layer, int(self.out_features))


def _conv_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Conv2d/ConvTranspose2d through the conv marker: a plain Conv/ConvTranspose node in the
    graph, no convolution computed while tracing (the DPT heads' full-resolution convs)."""
    transposed = isinstance(self, nn.ConvTranspose2d)
    if self.padding_mode != "zeros" or (transposed and any(self.output_padding)) or isinstance(self.padding, str):
        return type(self).forward(self, x)
    return torch.ops.qvggt.conv(x, self.weight, self.bias, list(self.stride), list(self.padding),
                                list(self.dilation), int(self.groups), transposed)


class _FunctionalWithAttentionMarker(types.ModuleType):
    """``torch.nn.functional`` with ``scaled_dot_product_attention`` -> the attention marker
    (installed as the attention module's ``F`` while an export view is active)."""

    def __init__(self):
        super().__init__("qvggt_export_functional")

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def scaled_dot_product_attention(q, k, v, *args, **kwargs):
        if args or kwargs:
            raise QvggtError("export: only plain scaled_dot_product_attention(q, k, v) is supported")
        return torch.ops.qvggt.attention(q, k, v)


class FixedRope(nn.Module):
    """2D RoPE with constant tables for one frame layout (``tokens_per_frame`` positions).

    Works on frame attention ``[B*S, heads, N, D]`` and global attention ``[B, heads, S*N, D]``
    alike: tokens are viewed as ``[.., -1, N, D]`` so the per-frame table broadcasts over frames.
    ``rotate_half`` of both halves is one MatMul with a signed permutation matrix ``P`` (each output
    is one product by +-1 plus exact zeros, so it is exact), and the y/x tables are concatenated:
    ``x * COS + (x @ P) * SIN`` is the reference's ``x * cos + rotate_half(x) * sin`` per half,
    bit for bit, in 5 ops instead of ~16.
    """

    def __init__(self, reference: nn.Module, rows: int, cols: int, num_special: int, head_dim: int):
        super().__init__()
        pos = patch_positions(1, rows, cols, num_special)[0]  # [N, 2]
        half = head_dim // 2
        cos, sin = reference.tables(half, int(pos.max()) + 1, torch.device("cpu"), torch.float32)
        self.tokens_per_frame = pos.shape[0]
        self.register_buffer("cos", torch.cat([cos[pos[:, 0]], cos[pos[:, 1]]], -1).contiguous(), persistent=False)
        self.register_buffer("sin", torch.cat([sin[pos[:, 0]], sin[pos[:, 1]]], -1).contiguous(), persistent=False)
        # rotate_half within each half: [a, b] -> [-b, a].
        perm = torch.zeros(head_dim, head_dim)
        quarter = half // 2
        for base in (0, half):
            for i in range(quarter):
                perm[base + quarter + i, base + i] = -1.0  # out[base+i] = -x[base+quarter+i]
                perm[base + i, base + quarter + i] = 1.0   # out[base+quarter+i] = x[base+i]
        self.register_buffer("perm", perm, persistent=False)

    def forward(self, tokens: torch.Tensor, positions=None) -> torch.Tensor:
        shape = tokens.shape
        x = tokens.reshape(shape[0], shape[1], -1, self.tokens_per_frame, shape[3])
        return (x * self.cos + torch.matmul(x, self.perm) * self.sin).reshape(shape)


def _dpt_pos_tables(head: DPTHead, height: int, width: int, features: int):
    """``ratio * pos_embed`` for every (channels, h, w) the head adds one to, for H x W input, as
    two small factors: channels [0, C/2) depend on the column only, [C/2, C) on the row only, so
    ``cols [1, C, 1, w]`` (zero in the second half) and ``rows [1, C, h, 1]`` (zero in the first)
    give ``x + pe == (x + cols) + rows`` bit for bit (adding an exact zero changes nothing). A
    full-size constant at 518x518 would add 137 MB per head to the file, and slicing x into
    halves would add full-size temporaries at run time."""
    ph, pw = height // head.patch_size, width // head.patch_size
    shapes = {(int(p.out_channels), ph, pw) for p in head.projects}
    shapes.add((features, height // head.down_ratio, width // head.down_ratio))
    tables = {}
    for c, h, w in shapes:
        pe = 0.1 * position_embedding(c, h, w, width / height)[None]
        cols = torch.zeros(1, c, 1, w)
        rows = torch.zeros(1, c, h, 1)
        cols[:, : c // 2] = pe[:, : c // 2, :1, :]
        rows[:, c // 2:] = pe[:, c // 2:, :, :1]
        tables[(c, h, w)] = (cols, rows)
    return tables


def _fixed_pos_embed(tables):
    def add_pos_embed(self, x: torch.Tensor, W: int, H: int, ratio: float = 0.1) -> torch.Tensor:
        c, h, w = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
        if (c, h, w) not in tables or ratio != 0.1:
            raise QvggtError(f"export: no precomputed DPT position embedding for {(c, h, w)}")
        cols, rows = tables[(c, h, w)]
        return (x + cols.to(x.dtype)) + rows.to(x.dtype)

    return add_pos_embed


@contextlib.contextmanager
def export_view(model: nn.Module, height: int, width: int) -> Iterator[nn.Module]:
    """Patch ``model`` (a VGGT) for tracing at ``height x width``; restore it on exit.

    Args:
        model (VGGT): float or fake-quantized (after ``apply_recipe``) model, eval mode.
        height (int): input height in pixels, a multiple of the patch size.
        width (int): input width in pixels, a multiple of the patch size.

    Yields:
        the same model object.
    """
    cfg = model.cfg
    p = cfg.patch_size
    if height <= 0 or width <= 0 or height % p or width % p:
        raise QvggtError(f"export size {height}x{width} must be positive multiples of the patch size {p}")
    agg = model.aggregator
    rows, cols = height // p, width // p
    undo = []
    try:
        _ACTIVE["__model__"] = model  # for the dense-heads marker
        undo.append(lambda: _ACTIVE.pop("__model__", None))
        # Linears -> markers.
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, QuantLinear)) and not name.startswith("track_head"):
                module._qvggt_layer = name
                module.forward = types.MethodType(_marked_forward, module)
                _ACTIVE[name] = module
                undo.append(lambda m=module, n=name: (m.__dict__.pop("forward", None),
                                                      m.__dict__.pop("_qvggt_layer", None),
                                                      _ACTIVE.pop(n, None)))
        # Convolutions -> traced without computing them.
        for module in model.modules():
            if type(module) in (nn.Conv2d, nn.ConvTranspose2d):
                module.forward = types.MethodType(_conv_forward, module)
                undo.append(lambda m=module: m.__dict__.pop("forward", None))
        # Attention -> marker (lowered per target: fused on ORT, MatMul/Softmax/MatMul for TensorRT).
        from qvggt_deploy.model.layers import attention as attention_module

        old_f = attention_module.F
        attention_module.F = _FunctionalWithAttentionMarker()
        undo.append(lambda: setattr(attention_module, "F", old_f))
        # RoPE with constant tables (one module is shared by all aggregator blocks).
        head_dim = cfg.embed_dim // cfg.num_heads
        fixed = FixedRope(agg.rope, rows, cols, cfg.patch_start_idx, head_dim)
        blocks = list(agg.frame_blocks) + list(agg.global_blocks)
        for block in blocks:
            old = block.attn.rope
            block.attn.rope = fixed
            undo.append(lambda b=block, o=old: setattr(b.attn, "rope", o))
        # DINOv2 positional table for this size.
        vit = agg.patch_embed
        pos = vit.interpolate_pos_encoding(height, width, torch.float32).detach().clone()
        if rows != vit.grid or cols != vit.grid:
            vit.register_buffer("_qvggt_pos", pos, persistent=False)
            vit.interpolate_pos_encoding = types.MethodType(lambda self, h, w, dtype: self._qvggt_pos.to(dtype), vit)
            undo.append(lambda: (vit.__dict__.pop("interpolate_pos_encoding", None),
                                 vit._buffers.pop("_qvggt_pos", None)))
        # DPT sin/cos embeddings as constants.
        for head in (model.depth_head, model.point_head):
            if head is None or not head.pos_embed:
                continue
            features = head.scratch.output_conv1.out_channels
            head._add_pos_embed = types.MethodType(_fixed_pos_embed(_dpt_pos_tables(head, height, width, features)), head)
            undo.append(lambda h=head: h.__dict__.pop("_add_pos_embed", None))
        yield model
    finally:
        for fn in reversed(undo):
            fn()


class VGGTExport(nn.Module):
    """``images [S, 3, H, W]`` -> the five contract outputs, for tracing inside :func:`export_view`.

    With ``dense_marker`` the two DPT heads become one ``qvggt.DenseHeads(taps..., images)`` marker
    (the exporter then runs them frame by frame in a Loop, see ``passes/loop_dense_heads.py``).
    """

    def __init__(self, model: nn.Module, dense_marker: bool = False):
        super().__init__()
        for head in ("camera_head", "depth_head", "point_head"):
            if getattr(model, head, None) is None:
                raise QvggtError(f"export needs the {head}; this model has it disabled")
        self.model = model
        self.dense_marker = dense_marker

    def forward(self, images: torch.Tensor):
        m = self.model
        images = images.unsqueeze(0)
        tokens_list, patch_start_idx = m.aggregator(images)
        pose_enc = m.camera_head(tokens_list)[-1]
        if self.dense_marker:
            taps = [tokens_list[i] for i in dense_taps(m)]
            depth, depth_conf, points, points_conf = torch.ops.qvggt.dense_heads(*taps, images)
        else:
            depth, depth_conf = m.depth_head._forward_frames(tokens_list, images, patch_start_idx)
            points, points_conf = m.point_head._forward_frames(tokens_list, images, patch_start_idx)
        return pose_enc, depth, depth_conf, points, points_conf


class DenseHeadsFrame(nn.Module):
    """The DPT heads on one frame: ``taps [1, 1, N, 2C] x 4, image [1, 1, 3, H, W]`` ->
    ``depth [1,1,H,W,1], depth_conf [1,1,H,W], world_points [1,1,H,W,3], world_points_conf`` (the
    body of the exporter's per-frame Loop)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, t0, t1, t2, t3, image):
        return run_dense_heads(self.model, (t0, t1, t2, t3), image)


@contextlib.contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silence the tracer's warnings about static sizes: H and W are fixed on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield
