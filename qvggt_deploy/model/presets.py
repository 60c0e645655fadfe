"""Named architecture presets.

``vggt-1b`` is the official VGGT-1B configuration (its state dict matches the official checkpoint
key for key). The small presets keep every component and code path (DINOv2 patch-embed ViT with
registers, alternating attention with QK-norm and RoPE, camera head with iterative adaLN
refinement, DPT depth/point heads, track head) with smaller widths and depths:

- ``tiny``: the project's own trained model (the embedded default), 224x224 inputs. Its tracker
  hidden size (64) keeps the fp32 checkpoint, track head included, under 30 MB (29.3 MB).
- ``micro``: the smallest sensible instance, for fast unit tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Tuple

from qvggt_deploy.errors import QvggtError


@dataclass(frozen=True)
class VGGTConfig:
    """Every shape-determining constant of a VGGT instance.

    The ViT patch embed and the aggregator share ``embed_dim``; heads see ``2 * embed_dim``
    (frame || global tokens).
    """

    name: str
    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    # Aggregator (alternating frame/global attention).
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    aa_init_values: float = 0.01
    # DINOv2 patch-embed ViT with registers.
    vit_depth: int = 24
    vit_num_heads: int = 16
    vit_num_register_tokens: int = 4
    vit_init_values: float = 1.0
    # Camera head.
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_iterations: int = 4
    # DPT heads (depth, point, track features).
    dpt_features: int = 256
    dpt_out_channels: Tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_head_features_2: int = 32
    intermediate_layer_idx: Tuple[int, int, int, int] = (4, 11, 17, 23)
    # Track head.
    track_features: int = 128
    tracker_latent_dim: int = 128
    tracker_hidden_size: int = 384
    tracker_depth: int = 6
    tracker_num_heads: int = 8
    tracker_corr_levels: int = 7
    tracker_corr_radius: int = 4
    tracker_num_virtual_tracks: int = 64
    tracker_iterations: int = 4
    # Feature maps are 1/tracker_stride of the image (DPT down_ratio); tracks are scaled back by it.
    tracker_stride: int = 2
    tracker_max_scale: float = 518.0  # divides the raw flow fed to the tracker transformer
    tracker_mlp_ratio: float = 4.0
    # Which heads exist (a disabled head has no parameters).
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True

    @property
    def grid(self) -> int:
        """Side of the stored positional-embedding grid (37 for 518/14)."""
        return self.img_size // self.patch_size

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token in each frame: camera token + register tokens."""
        return 1 + self.num_register_tokens

    def replace(self, **changes) -> "VGGTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise QvggtError(f"preset {self.name}: img_size {self.img_size} is not a multiple of "
                             f"patch_size {self.patch_size}")
        for heads, what in ((self.num_heads, "num_heads"), (self.vit_num_heads, "vit_num_heads")):
            if self.embed_dim % heads:
                raise QvggtError(f"preset {self.name}: embed_dim {self.embed_dim} not divisible by {what}")
        if (self.embed_dim // self.num_heads) % 4:
            raise QvggtError(f"preset {self.name}: 2D RoPE needs head_dim divisible by 4")
        if max(self.intermediate_layer_idx) >= self.depth:
            raise QvggtError(f"preset {self.name}: intermediate_layer_idx {self.intermediate_layer_idx} "
                             f"out of range for depth {self.depth}")


PRESETS: Dict[str, VGGTConfig] = {
    "vggt-1b": VGGTConfig(name="vggt-1b"),
    "tiny": VGGTConfig(
        name="tiny", img_size=224, embed_dim=128, depth=6, num_heads=4,
        vit_depth=4, vit_num_heads=4,
        camera_trunk_depth=1, camera_num_heads=4,
        dpt_features=64, dpt_out_channels=(32, 64, 128, 128), intermediate_layer_idx=(1, 2, 4, 5),
        track_features=32, tracker_latent_dim=32, tracker_hidden_size=64, tracker_depth=2,
        tracker_num_heads=4, tracker_corr_levels=3, tracker_corr_radius=2, tracker_num_virtual_tracks=16,
    ),
    "micro": VGGTConfig(
        name="micro", img_size=56, embed_dim=32, depth=4, num_heads=2,
        vit_depth=2, vit_num_heads=2,
        camera_trunk_depth=1, camera_num_heads=2, camera_iterations=2,
        dpt_features=16, dpt_out_channels=(8, 16, 32, 32), dpt_head_features_2=8,
        intermediate_layer_idx=(0, 1, 2, 3),
        track_features=8, tracker_latent_dim=8, tracker_hidden_size=16, tracker_depth=1,
        tracker_num_heads=2, tracker_corr_levels=2, tracker_corr_radius=1, tracker_num_virtual_tracks=4,
        tracker_iterations=2,
    ),
}


def get_preset(name: str) -> VGGTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise QvggtError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
