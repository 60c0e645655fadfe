"""A trace-friendly view of VGGT for ONNX export: fixed H x W, dynamic frame count.

:func:`export_view` patches a model in place for the duration of a ``with`` block (everything is
restored on exit, also on error):

- every Linear (``nn.Linear`` or the fake-quantized :class:`~qvggt_deploy.quant.fake.QuantLinear`)
  becomes one marker node ``qvggt.Linear(x)`` with attributes ``layer`` (the module's qualified
  name) and ``out_features``. The weights are not traced at all: the exporter's lowering
  (:mod:`qvggt_deploy.export.qdq`) writes each layer once, in the precision the plan asks for, so
  the camera trunk's four iterations share one initializer per weight;
- 2D RoPE uses constant per-frame cos/sin tables (positions depend only on H, W), the DINOv2
  positional table is resized once, and the DPT sin/cos embeddings are constants: nothing of
  this is recomputed in the graph, and no ``cartesian_prod``/bicubic-antialias/float64 op is traced.

:class:`VGGTExport` is the module to export: ``images [S, 3, H, W] -> (pose_enc, depth,
depth_conf, world_points, world_points_conf)`` (see :mod:`qvggt_deploy.backends.io`); it calls
the DPT heads on all frames at once (no Python frame-chunk loop, so S stays dynamic).
"""
from __future__ import annotations

import contextlib
import types
import warnings
from typing import Dict, Iterator, Tuple

import torch
from torch import nn

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.model.heads.dpt_head import DPTHead, position_embedding
from qvggt_deploy.model.layers.rope import patch_positions
from qvggt_deploy.quant.fake import QuantLinear

MARKER_DOMAIN = "qvggt"
LINEAR_MARKER = "Linear"

# layer name -> module, filled while an export view is active (the marker's forward needs the
# module, and autograd.Function arguments must be tensors, strings or numbers).
_ACTIVE: Dict[str, nn.Module] = {}


@contextlib.contextmanager
def _tracing_paused() -> Iterator[None]:
    """Compute without recording into the active trace: the marker's real output is needed for
    the values downstream, its internals (parameter reads) must not enter the graph."""
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


class _LinearMarker(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: str, out_features: int) -> torch.Tensor:
        module = _ACTIVE[layer]
        with _tracing_paused(), torch.no_grad():
            return type(module).forward(module, x)

    @staticmethod
    def symbolic(g, x, layer: str, out_features: int):
        y = g.op(f"{MARKER_DOMAIN}::{LINEAR_MARKER}", x, layer_s=layer, out_features_i=int(out_features))
        try:
            sizes = list(x.type().varyingSizes())
            y.setType(x.type().with_sizes(sizes[:-1] + [int(out_features)]))
        except (RuntimeError, AttributeError, TypeError):  # rank unknown: leave it to ONNX inference
            pass
        return y


def _marked_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _LinearMarker.apply(x, self._qvggt_layer, int(self.out_features))


class FixedRope(nn.Module):
    """2D RoPE with constant tables for one frame layout (``tokens_per_frame`` positions).

    Works on frame attention ``[B*S, heads, N, D]`` and global attention ``[B, heads, S*N, D]``
    alike: tokens are viewed as ``[.., -1, N, D]`` so the per-frame table broadcasts over frames.
    The arithmetic is the reference module's (``x * cos + rotate_half(x) * sin`` per half), so the
    result is bit-identical.
    """

    def __init__(self, reference: nn.Module, rows: int, cols: int, num_special: int, head_dim: int):
        super().__init__()
        pos = patch_positions(1, rows, cols, num_special)[0]  # [N, 2]
        half = head_dim // 2
        cos, sin = reference.tables(half, int(pos.max()) + 1, torch.device("cpu"), torch.float32)
        self.tokens_per_frame = pos.shape[0]
        self.rotate_half = reference.rotate_half
        self.register_buffer("cos_y", cos[pos[:, 0]].contiguous(), persistent=False)
        self.register_buffer("sin_y", sin[pos[:, 0]].contiguous(), persistent=False)
        self.register_buffer("cos_x", cos[pos[:, 1]].contiguous(), persistent=False)
        self.register_buffer("sin_x", sin[pos[:, 1]].contiguous(), persistent=False)

    def forward(self, tokens: torch.Tensor, positions=None) -> torch.Tensor:
        shape = tokens.shape
        x = tokens.reshape(shape[0], shape[1], -1, self.tokens_per_frame, shape[3])
        half = x.shape[-1] // 2
        y_part, x_part = x[..., :half], x[..., half:]
        y_part = y_part * self.cos_y + self.rotate_half(y_part) * self.sin_y
        x_part = x_part * self.cos_x + self.rotate_half(x_part) * self.sin_x
        return torch.cat([y_part, x_part], dim=-1).reshape(shape)


def _dpt_pos_tables(head: DPTHead, height: int, width: int, features: int) -> Dict[Tuple[int, int, int], torch.Tensor]:
    """``ratio * pos_embed`` for every (channels, h, w) the head adds one to, for H x W input."""
    ph, pw = height // head.patch_size, width // head.patch_size
    shapes = {(int(p.out_channels), ph, pw) for p in head.projects}
    shapes.add((features, height // head.down_ratio, width // head.down_ratio))
    return {s: (0.1 * position_embedding(s[0], s[1], s[2], width / height)[None]).contiguous() for s in shapes}


def _fixed_pos_embed(table: Dict[Tuple[int, int, int], torch.Tensor]):
    def add_pos_embed(self, x: torch.Tensor, W: int, H: int, ratio: float = 0.1) -> torch.Tensor:
        key = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        if key not in table or ratio != 0.1:
            raise QvggtError(f"export: no precomputed DPT position embedding for {key}")
        return x + table[key].to(x.dtype)

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
        # Linears -> markers.
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, QuantLinear)) and not name.startswith("track_head"):
                module._qvggt_layer = name
                module.forward = types.MethodType(_marked_forward, module)
                _ACTIVE[name] = module
                undo.append(lambda m=module, n=name: (m.__dict__.pop("forward", None),
                                                      m.__dict__.pop("_qvggt_layer", None),
                                                      _ACTIVE.pop(n, None)))
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
    """``images [S, 3, H, W]`` -> the five contract outputs, for tracing inside :func:`export_view`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        for head in ("camera_head", "depth_head", "point_head"):
            if getattr(model, head, None) is None:
                raise QvggtError(f"export needs the {head}; this model has it disabled")
        self.model = model

    def forward(self, images: torch.Tensor):
        m = self.model
        images = images.unsqueeze(0)
        tokens_list, patch_start_idx = m.aggregator(images)
        pose_enc = m.camera_head(tokens_list)[-1]
        depth, depth_conf = m.depth_head._forward_frames(tokens_list, images, patch_start_idx)
        points, points_conf = m.point_head._forward_frames(tokens_list, images, patch_start_idx)
        return pose_enc, depth, depth_conf, points, points_conf


@contextlib.contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silence the tracer's warnings about static sizes: H and W are fixed on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield
