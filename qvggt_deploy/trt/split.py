"""Split mode: an aggregator engine and a heads engine, for devices where the full engine does
not build (on an 8 GB Orin Nano the builder runs out of scratch memory, and fusing the camera head
into the aggregator's graph fails).

What crosses the boundary: the heads read the aggregator outputs of the DPT taps
(``intermediate_layer_idx``) and the camera token of the last layer. The aggregator part stacks
exactly those layers (the last layer is added when it is not a tap) into one tensor
``tokens [T, 1, S, N, 2C]`` in fp32 (the reference runs the heads in fp32); the heads part takes
``tokens`` and ``images`` and returns the common outputs. :func:`plan_split` gives the layers and
the boundary size; :class:`AggregatorPart` / :class:`HeadsPart` wrap a :class:`VGGT` so each part
exports to its own ONNX graph (:func:`export_split`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torch import nn

from qvggt_deploy.graph.io import FRAMES_DIM, INPUT_NAME, OUTPUT_NAMES
from qvggt_deploy.graph.metadata import extra_props
from qvggt_deploy.errors import QvggtError
from qvggt_deploy.log import get_logger
from qvggt_deploy.model.presets import VGGTConfig
from qvggt_deploy.trt.memory import tapped_layers, tokens_per_frame

logger = get_logger(__name__)

TOKENS_NAME = "tokens"
BOUNDARY_BYTES = 4  # fp32 at the boundary


@dataclass(frozen=True)
class SplitPlan:
    """Which aggregator layers cross from the aggregator engine to the heads engine, and their size.

    ``layers``: aggregator layer indices in stacking order; ``tokens`` has shape
    ``[len(layers), 1, S, tokens_per_frame, 2 * embed_dim]``.
    """

    layers: Tuple[int, ...]
    tokens_per_frame: int
    width: int
    camera_layer: int

    @property
    def bytes_per_frame(self) -> int:
        return len(self.layers) * self.tokens_per_frame * self.width * BOUNDARY_BYTES

    def boundary_shape(self, frames: int) -> Tuple[int, ...]:
        return (len(self.layers), 1, frames, self.tokens_per_frame, self.width)

    def boundary_bytes(self, frames: int) -> int:
        return frames * self.bytes_per_frame

    def to_dict(self) -> Dict[str, object]:
        return {"layers": list(self.layers), "camera_layer": self.camera_layer,
                "tokens_per_frame": self.tokens_per_frame, "width": self.width,
                "tensor": TOKENS_NAME, "dtype": "float32", "bytes_per_frame": self.bytes_per_frame}


def plan_split(cfg: VGGTConfig, height: int, width: int) -> SplitPlan:
    """The boundary for ``cfg`` at ``height x width`` input (multiples of 14)."""
    if height % cfg.patch_size or width % cfg.patch_size:
        raise QvggtError(f"image size {height}x{width} is not a multiple of the patch size {cfg.patch_size}")
    return SplitPlan(layers=tapped_layers(cfg), tokens_per_frame=tokens_per_frame(cfg, height, width),
                     width=2 * cfg.embed_dim, camera_layer=cfg.depth - 1)


class AggregatorPart(nn.Module):
    """``images [S, 3, H, W]`` -> ``tokens [T, 1, S, N, 2C]`` (the planned layers, fp32)."""

    def __init__(self, model: nn.Module, layers: Tuple[int, ...]):
        super().__init__()
        self.aggregator = model.aggregator
        self.layers = tuple(layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens_list, _ = self.aggregator(images.unsqueeze(0))
        return torch.stack([tokens_list[i].float() for i in self.layers])


class HeadsPart(nn.Module):
    """``(tokens [T, 1, S, N, 2C], images [S, 3, H, W])`` -> ``pose_enc, depth, depth_conf,
    world_points, world_points_conf`` (as :class:`VGGT` returns them, batch dim 1)."""

    def __init__(self, model: nn.Module, layers: Tuple[int, ...]):
        super().__init__()
        cfg = model.cfg
        missing = [i for i in set(cfg.intermediate_layer_idx) | {cfg.depth - 1} if i not in layers]
        if missing:
            raise QvggtError(f"the heads need aggregator layers {sorted(missing)}, not in the split plan {layers}")
        if model.camera_head is None or model.depth_head is None or model.point_head is None:
            raise QvggtError("split export needs the camera, depth and point heads")
        self.camera_head = model.camera_head
        self.depth_head = model.depth_head
        self.point_head = model.point_head
        self.depth = cfg.depth
        self.layers = tuple(layers)
        self.patch_start_idx = cfg.patch_start_idx

    def forward(self, tokens: torch.Tensor, images: torch.Tensor):
        tokens_list = [None] * self.depth
        for k, layer in enumerate(self.layers):
            tokens_list[layer] = tokens[k]
        images = images.unsqueeze(0).float()
        pose_enc = self.camera_head(tokens_list)[-1]
        # frames_chunk_size=None: all frames in one pass (a Python chunk loop would be unrolled
        # for the example frame count at export).
        depth, depth_conf = self.depth_head(tokens_list, images, self.patch_start_idx, frames_chunk_size=None)
        points, points_conf = self.point_head(tokens_list, images, self.patch_start_idx, frames_chunk_size=None)
        return pose_enc, depth, depth_conf, points, points_conf


def split_model(model: nn.Module, height: int, width: int) -> Tuple[SplitPlan, AggregatorPart, HeadsPart]:
    """Plan and wrap ``model`` (eval mode) into its two parts."""
    plan = plan_split(model.cfg, height, width)
    return plan, AggregatorPart(model, plan.layers).eval(), HeadsPart(model, plan.layers).eval()


def _export(module: nn.Module, args, path: Path, input_names, output_names, dynamic_axes, opset: int,
            metadata: Optional[Dict[str, str]]) -> Path:
    """``torch.onnx.export`` (TorchScript exporter, frames dynamic, metadata, one external-data file
    past 1 GiB). The parts are float graphs: the QDQ lowering of ``qvggt export`` does not run here."""
    from qvggt_deploy.fileio import atomic_path
    from qvggt_deploy.lazy import import_or_raise

    onnx = import_or_raise("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # Shape arithmetic on fixed H, W is traced as constants on purpose (H, W fixed per export).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, args, str(tmp), input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
        model = onnx.load(str(tmp))
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        large = sum(t.ByteSize() for t in model.graph.initializer) > (1 << 30)
        onnx.save(model, str(tmp), save_as_external_data=large, all_tensors_to_one_file=True,
                  location=path.name + ".data")
    return path


def export_split(model: nn.Module, out_dir: Union[str, Path], height: int, width: int, frames: int = 2,
                 opset: int = 17, stem: str = "vggt",
                 metadata: Optional[Dict[str, str]] = None) -> Tuple[SplitPlan, Path, Path]:
    """Export ``model`` as ``<stem>.aggregator.onnx`` and ``<stem>.heads.onnx`` in ``out_dir``.

    Both take the frame count as the dynamic ``frames`` axis; H and W are fixed. The split plan is
    recorded in each graph's metadata (``qvggt.split``) next to ``metadata``.
    """
    import json

    plan, agg, heads = split_model(model, height, width)
    out_dir = Path(out_dir)
    images = torch.rand(frames, 3, height, width)
    meta = {**(metadata or {}), **extra_props(split=json.dumps(plan.to_dict()))}
    agg_path = _export(agg, (images,), out_dir / f"{stem}.aggregator.onnx", [INPUT_NAME], [TOKENS_NAME],
                       {INPUT_NAME: {0: FRAMES_DIM}, TOKENS_NAME: {2: FRAMES_DIM}}, opset,
                       {**meta, **extra_props(part="aggregator")})
    with torch.no_grad():
        tokens = agg(images)
    dyn = {TOKENS_NAME: {2: FRAMES_DIM}, INPUT_NAME: {0: FRAMES_DIM}}
    dyn.update({name: {1: FRAMES_DIM} for name in OUTPUT_NAMES})
    heads_path = _export(heads, (tokens, images), out_dir / f"{stem}.heads.onnx", [TOKENS_NAME, INPUT_NAME],
                         list(OUTPUT_NAMES), dyn, opset, {**meta, **extra_props(part="heads")})
    return plan, agg_path, heads_path
