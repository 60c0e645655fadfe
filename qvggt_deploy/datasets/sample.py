"""The common sample of every benchmark reader, the seeded frame sampling, and the step from a
sample on disk to a :class:`~qvggt_deploy.data.synthetic.Scene` at the network's input size.

Conventions (as :mod:`qvggt_deploy.geometry`): extrinsics are camera-from-world ``[R | t]`` with
OpenCV axes (x right, y down, z forward); intrinsics are in pixels of the original image with
pixel (u, v) = integer (column, row) indices, so a principal point given in continuous
coordinates (COLMAP, normalised intrinsics: pixel centres at +0.5) is stored minus 0.5.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from qvggt_deploy.errors import QvggtError

DepthLoader = Callable[[int], np.ndarray]


@dataclass
class Sample:
    """One evaluation unit: the sampled frames of a sequence (CO3Dv2, RealEstate10K) or scene.

    S: sampled frames. ``extrinsics [S,3,4]`` and ``intrinsics [S,3,3]`` float64 (see module
    docstring); ``depth(i)`` returns frame i's ground-truth z-depth ``[h, w]`` (0 or non-finite =
    invalid; any resolution with the image's aspect) or is None for camera-only benchmarks.
    Images are read only when the sample is evaluated, so a reader never holds a dataset.
    """

    dataset: str
    sequence: str
    category: str
    image_paths: List[Path]
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    frame_ids: List[str]
    depth: Optional[DepthLoader] = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        S = len(self.image_paths)
        if self.extrinsics.shape != (S, 3, 4) or self.intrinsics.shape != (S, 3, 3) or len(self.frame_ids) != S:
            raise QvggtError(f"{self.dataset} {self.sequence}: {S} images but extrinsics {list(self.extrinsics.shape)}, "
                             f"intrinsics {list(self.intrinsics.shape)}, {len(self.frame_ids)} frame ids")

    @property
    def key(self) -> str:
        """Unique name of the sample within its dataset (category/sequence)."""
        return f"{self.category}/{self.sequence}"


def sample_frames(count: int, num_frames: int, seed: int, key: str) -> List[int]:
    """``num_frames`` distinct frame indices out of ``count``, drawn without replacement (the
    official ``np.random.choice(count, num_frames, replace=False)``), in drawn order; all frames in
    file order when ``count <= num_frames`` or ``num_frames <= 0``.

    The generator is seeded by ``(seed, crc32(key))`` per sequence, not once per run as the
    official script, so a sequence gets the same frames whatever the order, sharding or resume.
    """
    if num_frames <= 0 or count <= num_frames:
        return list(range(count))
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])
    return [int(i) for i in rng.choice(count, num_frames, replace=False)]


def _network_intrinsics(K: np.ndarray, placement) -> np.ndarray:
    """Intrinsics of the network input: continuous coordinates map by ``x_net = x * s + left``."""
    sx, sy = placement.scale_xy
    out = K.astype(np.float64).copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx + placement.left - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy + placement.top - 0.5
    return out


def _network_depth(depth: np.ndarray, placement, out_hw: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a depth map ``[h, w]`` (same aspect as the original image)
    onto the network grid; pixels outside the image (padding) are 0."""
    H, W = out_hw
    h, w = depth.shape
    ow, oh = placement.original_wh
    sx, sy = placement.scale_xy
    u = (np.arange(W) + 0.5 - placement.left) / sx  # continuous original coordinates
    v = (np.arange(H) + 0.5 - placement.top) / sy
    inside_u, inside_v = (u >= 0) & (u < ow), (v >= 0) & (v < oh)
    du = np.clip(np.floor(u * w / ow), 0, w - 1).astype(np.int64)
    dv = np.clip(np.floor(v * h / oh), 0, h - 1).astype(np.int64)
    out = depth[dv[:, None], du[None, :]].astype(np.float32)
    out[~(inside_v[:, None] & inside_u[None, :])] = 0
    out[~np.isfinite(out) | (out < 0)] = 0
    return out


def load_scene(sample: Sample, target_size: int, patch: int = 14,
               size_hw: Optional[Tuple[int, int]] = None):
    """Read ``sample``'s images (VGGT's ``crop`` preprocessing to ``target_size`` wide, or fitted into
    ``size_hw`` for a fixed-size model) and return a Scene with cameras and, when the benchmark has
    depth, depth, mask and world points on the same grid (ground truth in the dataset's world frame;
    extrinsics stay float64, as the official error computation)."""
    from qvggt_deploy.data.images import load_placed_images
    from qvggt_deploy.data.synthetic import Scene
    from qvggt_deploy.geometry import unproject_depth_map_to_point_map

    missing = [str(p) for p in sample.image_paths if not Path(p).is_file()]
    if missing:
        raise QvggtError(f"{sample.dataset} {sample.key}: image file {missing[0]} is missing")
    images, placements = load_placed_images(sample.image_paths, "crop", target_size, patch, size_hw)
    S, _, H, W = images.shape
    K = np.stack([_network_intrinsics(k, p) for k, p in zip(sample.intrinsics, placements)])
    E = torch.from_numpy(sample.extrinsics.astype(np.float64))
    if sample.depth is not None:
        depth = np.stack([_network_depth(np.asarray(sample.depth(i), dtype=np.float32), placements[i], (H, W))
                          for i in range(S)])
    else:
        depth = np.zeros((S, H, W), dtype=np.float32)
    depth_t = torch.from_numpy(depth)
    mask = depth_t > 0
    points = unproject_depth_map_to_point_map(depth_t.double(), E, torch.from_numpy(K)) * mask[..., None]
    meta = {"source": sample.key, "dataset": sample.dataset, "category": sample.category,
            "frames": list(sample.frame_ids), "has_depth": sample.depth is not None}
    return Scene(images=images, depth=depth_t, mask=mask, intrinsics=torch.from_numpy(K).float(),
                 extrinsics=E, world_points=points.float(), meta=meta)


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a QvggtError naming the missing piece of the layout."""
    if not path.exists():
        raise QvggtError(f"{path} is missing: {what}")
    return path


def pick(items: Sequence, index: Sequence[int]) -> list:
    return [items[i] for i in index]
