"""One sequence's predictions as numpy arrays, with each frame's :class:`Placement` in its photo.

Every backend returns the same five outputs (:mod:`qvggt_deploy.graph.io`); this is what the
writers share, so the torch, ORT and TensorRT folders differ only by the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from qvggt_deploy.data.images import Placement
from qvggt_deploy.errors import QvggtError

POINT_SOURCES = ("depth", "pointmap")


@dataclass
class Points:
    """Confidence-filtered points, each from one network pixel (``frame``, ``row``, ``col``).

    Order is frame-major, then row-major: the writers rely on it for COLMAP's ids.
    """

    xyz: np.ndarray  # [M, 3] float32, world (= first camera) frame
    rgb: np.ndarray  # [M, 3] uint8
    frame: np.ndarray  # [M] int
    row: np.ndarray  # [M] int
    col: np.ndarray  # [M] int

    def __len__(self) -> int:
        return len(self.xyz)


@dataclass
class Reconstruction:
    """Predictions for S frames at the network input size H x W.

    Attributes:
        names: image file names as given, one per frame.
        images: ``[S, H, W, 3]`` uint8, the network input (colours of the points).
        extrinsics: ``[S, 3, 4]`` camera-from-world ``[R | t]`` (OpenCV axes; world = first camera).
        intrinsics: ``[S, 3, 3]`` at H x W in VGGT's convention (integer pixel indices, cx = W/2).
        pose_enc: ``[S, 9]``; depth, depth_conf: ``[S, H, W]``; world_points: ``[S, H, W, 3]``;
        world_points_conf: ``[S, H, W]``.
        placements: where each photo lies in the network input (padding is not the photo).
    """

    names: List[str]
    images: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    pose_enc: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray
    world_points: np.ndarray
    world_points_conf: np.ndarray
    placements: List[Placement]

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray], images, names: Sequence[str],
                     placements: Sequence[Placement]) -> "Reconstruction":
        """From a runner's outputs (batch dim 1) and its input ``images`` ``[S, 3, H, W]`` in [0, 1]."""
        import torch

        from qvggt_deploy.geometry.predictions import cameras_from_pose_enc

        images = np.asarray(images.numpy() if hasattr(images, "numpy") else images, dtype=np.float32)
        S, _, H, W = images.shape
        if not len(names) == len(placements) == S:
            raise QvggtError(f"{S} frames but {len(names)} names and {len(placements)} placements")
        pose_enc = np.asarray(outputs["pose_enc"], dtype=np.float32).reshape(S, 9)
        extrinsics, intrinsics = cameras_from_pose_enc(torch.from_numpy(pose_enc), (H, W))
        return cls(
            names=list(names),
            images=(images.transpose(0, 2, 3, 1) * 255.0).round().clip(0, 255).astype(np.uint8),
            extrinsics=extrinsics, intrinsics=intrinsics, pose_enc=pose_enc,
            depth=np.asarray(outputs["depth"], dtype=np.float32).reshape(S, H, W),
            depth_conf=np.asarray(outputs["depth_conf"], dtype=np.float32).reshape(S, H, W),
            world_points=np.asarray(outputs["world_points"], dtype=np.float32).reshape(S, H, W, 3),
            world_points_conf=np.asarray(outputs["world_points_conf"], dtype=np.float32).reshape(S, H, W),
            placements=list(placements),
        )

    @property
    def size_hw(self) -> Tuple[int, int]:
        return int(self.depth.shape[1]), int(self.depth.shape[2])

    def arrays(self) -> Dict[str, np.ndarray]:
        """The raw predictions by output name."""
        return {"pose_enc": self.pose_enc, "depth": self.depth, "depth_conf": self.depth_conf,
                "world_points": self.world_points, "world_points_conf": self.world_points_conf}

    def valid(self) -> np.ndarray:
        """``[S, H, W]`` bool: pixels that show the photo (padding added by preprocessing is not)."""
        H, W = self.size_hw
        return np.stack([p.valid_mask(H, W) for p in self.placements])

    def points(self, source: str = "depth", conf_percentile: float = 50.0) -> Points:
        """Points of the photo pixels whose confidence is at least the given percentile.

        Args:
            source: "depth" (depth unprojected with the predicted cameras, usually the more
                accurate, as the VGGT authors note) or "pointmap" (the point head). Defaults to "depth".
            conf_percentile: percentile of the photo pixels' confidence below which points are
                dropped (0 keeps all). Defaults to 50.
        """
        from qvggt_deploy.geometry.unproject import unproject_depth_map_to_point_map

        if source == "depth":
            xyz = unproject_depth_map_to_point_map(self.depth, self.extrinsics, self.intrinsics)
            conf = self.depth_conf
        elif source == "pointmap":
            xyz, conf = self.world_points, self.world_points_conf
        else:
            raise QvggtError(f"point source must be one of {', '.join(POINT_SOURCES)}, got {source!r}")
        keep = self.valid() & np.isfinite(xyz).all(axis=-1) & np.isfinite(conf)
        if conf_percentile > 0 and keep.any():
            keep &= conf >= np.percentile(conf[keep], conf_percentile)
        frame, row, col = np.nonzero(keep)
        return Points(np.asarray(xyz[keep], dtype=np.float32), self.images[keep], frame, row, col)
