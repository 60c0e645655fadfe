"""Which modules of VGGT are quantization candidates, and how smoothing scales fold into them.

Candidates: every ``nn.Linear`` of the aggregator (the DINOv2 patch-embed ViT included) and of the
camera head. (The DPT heads' only Linear-like ops are 1x1 convolutions and stay in float, as do
all other convolutions and norms; the track head is not deployed.)

Scale groups (AWQ-style, declared once): a per-input-channel factor ``s`` divides the output of
``prev`` and multiplies the input columns of every layer in ``layers``; the float model is
unchanged. ``prev_kind``:
- ``layernorm``: LayerNorm weight and bias are divided by s (norm1 -> qkv, norm2 -> fc1).
- ``linear_rows``: rows ``rows`` of the previous Linear (weight and bias) are divided by s
  (the v third of qkv -> attn.proj: attention is linear in v).
- ``activation``: a per-channel division inserted after the activation (GELU -> fc2, and SiLU ->
  poseLN_modulation.1 in the camera head), kept as an explicit multiply because GELU and SiLU are
  not positively homogeneous.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from torch import nn

QUANT_ROOTS = ("aggregator", "camera_head")


@dataclass(frozen=True)
class ScaleGroup:
    prev: str
    prev_kind: str
    layers: Tuple[str, ...]
    rows: Optional[Tuple[int, int]] = None  # for linear_rows: [start, end) output rows of prev

    @property
    def key(self) -> str:
        return f"smooth.{self.prev}" + (f".rows{self.rows[0]}_{self.rows[1]}" if self.rows else "")


def candidate_linears(model: nn.Module) -> Dict[str, nn.Linear]:
    """Fully-qualified name -> Linear for every quantization candidate, in execution order."""
    out: Dict[str, nn.Linear] = {}
    for root in QUANT_ROOTS:
        sub = getattr(model, root, None)
        if sub is None:
            continue
        for name, module in sub.named_modules():
            if isinstance(module, nn.Linear):
                out[f"{root}.{name}"] = module
    return out


def transformer_blocks(model: nn.Module) -> List[str]:
    """Names of the transformer blocks that hold candidates (calibration and sensitivity units),
    in execution order: ViT blocks, then frame/global blocks interleaved, then the camera trunk."""
    agg = model.aggregator
    names = [f"aggregator.patch_embed.blocks.{i}" for i in range(len(agg.patch_embed.blocks))]
    for i in range(len(agg.frame_blocks)):
        names += [f"aggregator.frame_blocks.{i}", f"aggregator.global_blocks.{i}"]
    if getattr(model, "camera_head", None) is not None:
        names += [f"camera_head.trunk.{i}" for i in range(len(model.camera_head.trunk))]
    return names


def block_scale_groups(block: str, dim: int) -> List[ScaleGroup]:
    """The scale groups inside one transformer block named ``block`` of width ``dim``."""
    return [
        ScaleGroup(f"{block}.norm1", "layernorm", (f"{block}.attn.qkv",)),
        ScaleGroup(f"{block}.attn.qkv", "linear_rows", (f"{block}.attn.proj",), rows=(2 * dim, 3 * dim)),
        ScaleGroup(f"{block}.norm2", "layernorm", (f"{block}.mlp.fc1",)),
        ScaleGroup(f"{block}.mlp.act", "activation", (f"{block}.mlp.fc2",)),
    ]


def head_scale_groups(model: nn.Module) -> List[ScaleGroup]:
    """Scale groups of the camera head outside its trunk: SiLU -> poseLN_modulation.1,
    trunk_norm -> pose_branch.fc1, GELU -> pose_branch.fc2 (each output feeds only that Linear)."""
    if getattr(model, "camera_head", None) is None:
        return []
    return [
        ScaleGroup("camera_head.poseLN_modulation.0", "activation", ("camera_head.poseLN_modulation.1",)),
        ScaleGroup("camera_head.trunk_norm", "layernorm", ("camera_head.pose_branch.fc1",)),
        ScaleGroup("camera_head.pose_branch.act", "activation", ("camera_head.pose_branch.fc2",)),
    ]


def scale_groups(model: nn.Module) -> List[ScaleGroup]:
    """All scale groups of the model: those of every block, then the camera head's."""
    groups: List[ScaleGroup] = []
    for block in transformer_blocks(model):
        dim = model.get_submodule(block).norm1.normalized_shape[0]
        groups += block_scale_groups(block, dim)
    return groups + head_scale_groups(model)


def iter_block_linears(model: nn.Module, block: str) -> Iterator[Tuple[str, nn.Linear]]:
    for name, module in model.get_submodule(block).named_modules():
        if isinstance(module, nn.Linear):
            yield f"{block}.{name}", module


@dataclass(frozen=True)
class Unit:
    """One calibration / sensitivity / mixed-precision unit: a transformer block, or one submodule
    of the camera head outside its trunk (``camera_head.embed_pose``,
    ``camera_head.poseLN_modulation``, ``camera_head.pose_branch``: the last one is small and
    decides the pose directly, so it gets its own precision). ``kind``: ``vit`` | ``frame`` |
    ``global`` (aggregator program, run by :class:`~qvggt_deploy.quant.stream.CalibStream`) or
    ``camera`` (inside the camera head's refinement loop, inputs captured by hooks)."""

    name: str
    kind: str
    linears: Tuple[str, ...]
    is_block: bool = True


def quant_units(model: nn.Module) -> List[Unit]:
    """Every unit in execution order; together they own each candidate Linear exactly once."""
    units: List[Unit] = []
    for block in transformer_blocks(model):
        if ".patch_embed." in block:
            kind = "vit"
        elif ".frame_blocks." in block:
            kind = "frame"
        elif ".global_blocks." in block:
            kind = "global"
        else:
            kind = "camera"
        units.append(Unit(block, kind, tuple(n for n, _ in iter_block_linears(model, block))))
    owned = {n for u in units for n in u.linears}
    rest: Dict[str, List[str]] = {}
    for name in candidate_linears(model):
        if name in owned:
            continue
        if not name.startswith("camera_head."):
            raise ValueError(f"candidate Linear {name} belongs to no unit")
        rest.setdefault(".".join(name.split(".")[:2]), []).append(name)
    units += [Unit(prefix, "camera", tuple(names), is_block=False) for prefix, names in rest.items()]
    return units
